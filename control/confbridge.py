"""`confbridge`: start the bridge (`confbridge serve --config configs/default.toml`)."""

# This command lives at the top of the stack, in the control package, because `serve` runs the
# whole product (`control.runtime`): `bridge` never imports `control`.
# `python -m control.confbridge ...` is the same as `confbridge ...`.

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvloop

from bridge.config import ConfigError, load_config
from bridge.logs import configure_logging
from bridge.net.tls import check_files as check_tls_files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="confbridge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the conference bridge")
    serve.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML configuration file (default: built-in defaults)",
    )
    check = commands.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("--config", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        check_tls_files(config.sip)
    except ConfigError as exc:
        print(f"confbridge: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print("configuration OK")
        return 0
    configure_logging(config.log.level, config.log.format)
    if config.control.enabled:
        from control.first_run import ensure_admin_token

        try:
            config = ensure_admin_token(config)
        except ConfigError as exc:
            print(f"confbridge: configuration error: {exc}", file=sys.stderr)
            return 2
    from control.runtime import serve_forever

    uvloop.run(serve_forever(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
