"""The admin token at first start (as Jupyter and Grafana do): with none configured, one is
generated, kept in `<data dir>/admin_token` readable by the owner only, and its place is printed,
so the API is usable right after the README's serve command and nobody else on the machine can
read the token. A configured token (`control.admin_token` or its environment variable) wins and
no file is written."""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import stat
import sys
from pathlib import Path

import structlog

from bridge.config import Config, ConfigError

log = structlog.get_logger(__name__)

TOKEN_FILE = "admin_token"
VALID = re.compile(r"\S{16,}")


def token_path(config: Config) -> Path:
    return Path(config.data.dir) / TOKEN_FILE


def ensure_admin_token(config: Config) -> Config:
    """`config` with an admin token: the configured one, the one kept under the data directory,
    or a new one written there now."""
    if config.control.admin_token:
        return config
    path = token_path(config)
    if path.exists():
        token = read_token(path)
        created = False
    else:
        token = write_token(path)
        created = True
    log.info("control.admin_token", file=str(path.resolve()), created=created)
    if created:
        print(
            f"confbridge: generated the admin token, readable by you only: {path.resolve()}\n"
            f"  export CONFCTL_TOKEN=$(cat {path})",
            file=sys.stderr,
            flush=True,
        )
    control = dataclasses.replace(config.control, admin_token=token)
    return dataclasses.replace(config, control=control)


def read_token(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, 0o600)
        log.warning("control.admin_token_permissions_fixed", file=str(path), was=oct(mode))
    token = path.read_text().strip()
    if not VALID.fullmatch(token):
        raise ConfigError(
            f"{path}: the admin token must be 16+ characters without spaces; delete the file to "
            "get a new one at the next start"
        )
    return token


def write_token(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = f"cba_{secrets.token_urlsafe(32)}"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return token
