"""Start-up configuration: TOML file, then CONFBRIDGE_<SECTION>_<KEY> environment overrides.

Everything is validated once, here, into frozen dataclasses, so the rest of the bridge never
sees a bad value. Each error names the key (or the environment variable) it came from, and
unknown sections and keys are errors: a typo must not silently fall back to a default.

Each key is declared once, as a dataclass field made by `key(default, rule)`: the loader reads
the sections, their keys, the environment variable names and the rules off the dataclasses,
so a key cannot be added without its rule, nor a rule left behind without its key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

__all__ = [
    "AnnouncementsConfig",
    "ApplicationDefinition",
    "Config",
    "ConfigError",
    "ControlConfig",
    "DataConfig",
    "DialOutConfig",
    "KeypadConfig",
    "LogConfig",
    "RoomDefinition",
    "RoomsConfig",
    "RtpConfig",
    "SipConfig",
    "config_as_dict",
    "load_config",
]

ENV_PREFIX = "CONFBRIDGE_"
SUPPORTED_CODECS = ("OPUS", "G722", "PCMU", "PCMA")  # the default preference order
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("console", "json")
ACCESS_MODES = ("none", "room", "caller", "room+caller")
_ROOM_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
_DATABASE_URL_RE = re.compile(r"^(sqlite|postgres|postgresql)(\+\w+)?://")
_UNSPECIFIED_ADDRESSES = ("0.0.0.0", "::")

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message names it."""


# --------------------------------------------------------------------------- value rules


class _Invalid(Exception):
    """Raised by a rule with the problem text; the caller prefixes the key's name."""


Rule = Callable[[Any], Any]


def _int_rule(lo: int, hi: int, *, even: bool = False, step: int = 1) -> Rule:
    what = "an even integer" if even else "an integer"
    if step != 1:
        what = f"a multiple of {step}"

    def check(value: Any) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or not lo <= value <= hi or value % (2 if even else step):
            raise _Invalid(f"must be {what} in {lo}..{hi}, got {value!r}")
        return int(value)

    return check


def _bool_rule(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, got {value!r}")
    return value


def _choice_rule(choices: tuple[str, ...]) -> Rule:
    def check(value: Any) -> str:
        if value not in choices:
            raise _Invalid(f"must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return check


def _ip_rule(*, allow_empty: bool) -> Rule:
    def check(value: Any) -> str:
        if allow_empty and value == "":
            return value
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise _Invalid(f"must be an IPv4 or IPv6 address, got {value!r}") from None

    return check


def _text_rule(
    *, allow_empty: bool, pattern: re.Pattern[str] | None = None, hint: str = ""
) -> Rule:
    def check(value: Any) -> str:
        if not isinstance(value, str) or (not value and not allow_empty):
            raise _Invalid(f"must be a non-empty string, got {value!r}")
        if any(c in value for c in "\r\n\0"):
            raise _Invalid(f"must not contain control characters, got {value!r}")
        if value and pattern is not None and not pattern.match(value):
            raise _Invalid(f"must be {hint}, got {value!r}")
        return value

    return check


def _list_rule(item: Rule, *, allow_empty: bool) -> Rule:
    def check(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise _Invalid(f"must be a list, got {value!r}")
        if not value and not allow_empty:
            raise _Invalid("must not be empty")
        items = tuple(item(v) for v in value)
        duplicates = sorted({v for v in items if items.count(v) > 1})
        if duplicates:
            raise _Invalid(f"must not repeat {', '.join(map(str, duplicates))}")
        return items

    return check


def _network_rule(value: Any) -> str:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        problem = f"each must be an address or network like 10.0.0.0/8, got {value!r}"
        raise _Invalid(problem) from None


def _number_rule(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[+]?[0-9]{1,20}", value):
        raise _Invalid(f"each must be a number (+ and up to 20 digits), got {value!r}")
    return value


def _keys_rule(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9*#A-D]{0,3}", value):
        raise _Invalid(f"must be up to 3 keys of 0-9, *, #, A-D (or empty), got {value!r}")
    return value


def _codec_rule(value: Any) -> str:
    name = value.upper() if isinstance(value, str) else value
    if name not in SUPPORTED_CODECS:
        raise _Invalid(f"each must be one of {', '.join(SUPPORTED_CODECS)}, got {value!r}")
    return str(name)


def _room_name_rule(value: Any) -> str:
    if not isinstance(value, str) or not _ROOM_NAME_RE.match(value):
        raise _Invalid(f"each must match [A-Za-z0-9._-]{{1,32}}, got {value!r}")
    return value


def _workers_rule(value: Any) -> int | str:
    if value == "auto":
        return "auto"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 64:
        raise _Invalid(f'must be "auto" or a number of processes 0..64, got {value!r}')
    return value


# --------------------------------------------------------------------------- declaring keys

_RULE = "confbridge.rule"  # field metadata: the key's rule
_TABLES = "confbridge.tables"  # Config field metadata: [[name]] tables of this dataclass


def key(default: T, rule: Rule) -> T:
    """A key with its default and rule side by side, so the loader can find both by itself."""
    return field(default=default, metadata={_RULE: rule})


def required_key(rule: Rule) -> Any:
    """A key without a default, e.g. a [[room]]'s name: a table missing it is an error."""
    return field(metadata={_RULE: rule})


def tables(cls: type[Any]) -> Any:
    """An array of [[name]] tables, each read into a ``cls``; none by default."""
    return field(default=(), metadata={_TABLES: cls})


# --------------------------------------------------------------------------- the keys


@dataclass(frozen=True)
class SipConfig:
    bind: str = key("0.0.0.0", _ip_rule(allow_empty=False))
    advertise: str = key("", _ip_rule(allow_empty=True))
    udp_port: int = key(5060, _int_rule(0, 65535))
    tcp_port: int = key(5060, _int_rule(0, 65535))
    t1_ms: int = key(500, _int_rule(1, 10_000))
    t2_ms: int = key(4000, _int_rule(1, 60_000))
    t4_ms: int = key(5000, _int_rule(1, 60_000))
    max_message_bytes: int = key(65535, _int_rule(1024, 1_048_576))
    user_agent: str = key("confbridge/0.1", _text_rule(allow_empty=False))
    answer_delay_ms: int = key(0, _int_rule(0, 10_000))
    session_expires_s: int = key(1800, _int_rule(90, 86_400))
    min_se_s: int = key(90, _int_rule(90, 86_400))
    keepalive_options_s: int = key(0, _int_rule(0, 3600))  # OPTIONS in each dialog; 0 = off
    keepalive_crlf_s: int = key(0, _int_rule(0, 3600))  # CRLFCRLF on each TCP connection
    # false: only [[peer]] sources and digest users may call in (others: 401 challenge or 403)
    allow_guests: bool = key(True, _bool_rule)
    # SIP over TLS: listens on tls_port when a certificate and key (PEM files) are given;
    # tls_ca ("" = the system's store) verifies the servers we call over TLS
    tls_port: int = key(5061, _int_rule(0, 65535))
    tls_cert: str = key("", _text_rule(allow_empty=True))
    tls_key: str = key("", _text_rule(allow_empty=True))
    tls_ca: str = key("", _text_rule(allow_empty=True))
    tls_verify: bool = key(True, _bool_rule)
    # the digest challenges offered to [[peer]] users, most preferred first (RFC 8760)
    digest_algorithms: tuple[str, ...] = key(
        ("SHA-256", "MD5"), _list_rule(_choice_rule(("SHA-256", "MD5")), allow_empty=False)
    )


@dataclass(frozen=True)
class RtpConfig:
    port_min: int = key(20000, _int_rule(1024, 65534, even=True))
    port_max: int = key(29998, _int_rule(1024, 65534, even=True))
    jitter_target_ms: int = key(40, _int_rule(20, 60, step=20))
    jitter_max_ms: int = key(60, _int_rule(20, 200, step=20))
    timeout_s: int = key(30, _int_rule(1, 3600))
    codecs: tuple[str, ...] = key(SUPPORTED_CODECS, _list_rule(_codec_rule, allow_empty=False))
    # SRTP with SDES keys: off (RTP/AVP only), optional (answer RTP/SAVP offers with SRTP,
    # RTP/AVP with RTP), mandatory (488 to RTP/AVP offers; our offers are RTP/SAVP)
    srtp: str = key("optional", _choice_rule(("off", "optional", "mandatory")))
    # media workers: one RTP port per worker for every call whose room is known at answer time
    shared_port: bool = key(False, _bool_rule)


@dataclass(frozen=True)
class RoomsConfig:
    auto_create: bool = key(True, _bool_rule)
    max_participants: int = key(40, _int_rule(2, 1000))
    names: tuple[str, ...] = key((), _list_rule(_room_name_rule, allow_empty=True))
    ivr_users: tuple[str, ...] = key(("conference",), _list_rule(_room_name_rule, allow_empty=True))
    code_attempts: int = key(3, _int_rule(1, 10))
    code_timeout_s: int = key(15, _int_rule(3, 120))


@dataclass(frozen=True)
class KeypadConfig:
    """Keys a joined participant presses (a key or short sequence; "" disables the action)."""

    toggle_mute: str = key("1", _keys_rule)
    volume_down: str = key("4", _keys_rule)
    volume_up: str = key("6", _keys_rule)
    leave: str = key("8", _keys_rule)
    toggle_recording: str = key("", _keys_rule)  # start/stop recording the room; "" = no key
    # who may: anyone, or only callers on the room's caller list ([[room]] callers, the API's)
    recording_by: str = key("listed", _choice_rule(("anyone", "listed")))


@dataclass(frozen=True)
class AnnouncementsConfig:
    """What the bridge says and plays on its own, as ConfBridge does."""

    # "you are the only participant" to whoever joins alone
    only_participant: bool = key(True, _bool_rule)
    # a short chime to the others when someone joins or leaves...
    join_leave_tones: bool = key(True, _bool_rule)
    # ...only in rooms this small: chiming a crowd costs and annoys
    tones_max_room: int = key(20, _int_rule(0, 1000))
    # uploaded announcements (API), kept as 8 kHz WAV files; relative to the working directory
    dir: str = key("announcements", _text_rule(allow_empty=False))
    max_upload_mb: int = key(20, _int_rule(1, 1024))  # a larger upload is refused (413)
    max_seconds: int = key(600, _int_rule(1, 3600))  # longer audio is refused


@dataclass(frozen=True)
class RoomDefinition:
    """A room declared in the config file ([[room]] tables): its access mode and code."""

    name: str = required_key(_room_name_rule)
    access: str = key("none", _choice_rule(ACCESS_MODES))  # none | room | caller | room+caller
    # digits the caller enters (ended by #) in room and room+caller modes
    code: str = key(
        "", _text_rule(allow_empty=True, pattern=re.compile(r"^[0-9]{1,16}$"), hint="1-16 digits")
    )
    # caller numbers admitted without a code (caller modes)
    callers: tuple[str, ...] = key(
        (),
        _list_rule(
            _text_rule(
                allow_empty=False,
                pattern=re.compile(r"^[+]?[A-Za-z0-9._-]{1,64}$"),
                hint="a caller number or user name",
            ),
            allow_empty=True,
        ),
    )
    max_participants: int = key(0, _int_rule(0, 1000))  # 0: rooms.max_participants


@dataclass(frozen=True)
class ConferencesConfig:
    """Managed conferences' records."""

    # days an ended conference's record is kept (its name stays its tenant's and is never
    # created by dialling); then it is purged and the name is free. 0 = keep forever
    retention_days: int = key(0, _int_rule(0, 36_500))


@dataclass(frozen=True)
class ControlConfig:
    """The HTTP control plane served in the bridge's own event loop."""

    enabled: bool = key(True, _bool_rule)
    http_bind: str = key("127.0.0.1", _ip_rule(allow_empty=False))
    http_port: int = key(8080, _int_rule(0, 65535))  # 0 = pick a free port (tests)
    # bearer token for /v1/admin (tenants, tokens); "" = generated under data.dir (first_run.py)
    admin_token: str = key(
        "",
        _text_rule(
            allow_empty=True, pattern=re.compile(r"^\S{16,}$"), hint="16+ characters, no spaces"
        ),
    )
    max_page: int = key(500, _int_rule(1, 10_000))  # largest `limit` a list accepts
    max_body_bytes: int = key(1_048_576, _int_rule(1024, 67_108_864))  # larger bodies: 413
    # failed authentications from one address within the window block it (429) for a while
    auth_failure_limit: int = key(20, _int_rule(1, 100_000))
    auth_failure_window_s: int = key(60, _int_rule(1, 86_400))
    auth_block_s: int = key(300, _int_rule(1, 86_400))


@dataclass(frozen=True)
class DialOutConfig:
    """Outgoing calls: E.164 numbers go to the trunk, SIP URIs are called directly."""

    # host:port of the trunk for numbers, or a host name alone: located by NAPTR/SRV (RFC 3263)
    # with failover to the next target; "" = numbers unroutable
    trunk: str = key(
        "",
        _text_rule(
            allow_empty=True,
            pattern=re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$"),
            hint="empty, host or host:port",
        ),
    )
    # ip:port of the DNS server for NAPTR/SRV/A look-ups of calls out; "" = the system's
    dns_server: str = key(
        "",
        _text_rule(
            allow_empty=True,
            pattern=re.compile(r"^[0-9.]+:[0-9]{1,5}$"),
            hint="empty or ip:port",
        ),
    )
    # host:port of a proxy every call out goes through (a pre-loaded Route, RFC 3261 §8.1.2);
    # "" = straight to the trunk or the URI's host
    outbound_proxy: str = key(
        "",
        _text_rule(
            allow_empty=True,
            pattern=re.compile(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$"),
            hint="empty or host:port",
        ),
    )
    # digest credentials the trunk challenges for (401 or 407)
    trunk_username: str = key("", _text_rule(allow_empty=True))
    trunk_password: str = key("", _text_rule(allow_empty=True))
    trunk_pai: bool = key(False, _bool_rule)  # send P-Asserted-Identity with the caller id
    # how calls reach the trunk: udp, or tls (sip.tls_ca verifies it; port 5061 by default)
    trunk_transport: str = key("udp", _choice_rule(("udp", "tls")))
    # REGISTER with the trunk (its host as the domain, trunk_username as the user) and keep
    # the binding refreshed; for carriers that only take calls from registered endpoints
    trunk_register: bool = key(False, _bool_rule)
    trunk_register_expires_s: int = key(600, _int_rule(60, 86_400))
    # default caller number; "" = the conference name
    caller_id: str = key(
        "", _text_rule(allow_empty=True, pattern=re.compile(r"^[+]?[0-9]{1,20}$"), hint="a number")
    )
    # "owned": a caller id a request names must be one of its application's `caller_ids`;
    # "any": whatever number it names (a trunk that checks for itself)
    caller_id_policy: str = key("owned", _choice_rule(("owned", "any")))
    ring_timeout_s: int = key(30, _int_rule(5, 300))  # CANCEL an unanswered call after this long
    # "press # to join": hang up when no # within this
    confirm_timeout_s: int = key(15, _int_rule(3, 120))
    # the bridge sends BYE after this (Orange: 2 hours)
    max_call_s: int = key(7200, _int_rule(10, 86_400))
    max_destinations: int = key(8, _int_rule(1, 100))  # per request (Hoiio)
    # outgoing calls up at once per application (Hoiio)
    max_concurrent: int = key(8, _int_rule(1, 1000))
    # the rate fields of notifications are 0 in this currency
    currency: str = key(
        "USD",
        _text_rule(allow_empty=False, pattern=re.compile(r"^[A-Z]{3}$"), hint="an ISO 4217 code"),
    )


@dataclass(frozen=True)
class MediaConfig:
    """Where rooms are mixed: media worker processes, each with its own loop and RTP sockets."""

    # "auto": one per core (none on a 1-core machine); 0: in-process
    workers: int | str = key("auto", _workers_rule)
    # "vector": every G.711 room of a process in one tick; "reference": room by room (Room.tick)
    tick: str = key("vector", _choice_rule(("vector", "reference")))
    # 0: a new room goes to the least-loaded worker (spread); N: to the first worker with
    # fewer than N participants, so one fills before the next opens (a worker's tick has a
    # fixed cost, paid once per worker: see the README's Figures)
    fill_workers: int = key(0, _int_rule(0, 1_000_000))

    @property
    def worker_count(self) -> int:
        if self.workers != "auto":
            return int(self.workers)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return cores if cores and cores > 1 else 0


@dataclass(frozen=True)
class ApplicationDefinition:
    """A tenant declared in the config file ([[application]] tables) with one API token."""

    name: str = required_key(
        _text_rule(
            allow_empty=False,
            pattern=re.compile(r"^[A-Za-z0-9._-]{1,64}$"),
            hint="1-64 of A-Za-z0-9._-",
        )
    )
    # required in a table (see _application_definitions), though code may leave it out
    token: str = key(
        "",
        _text_rule(
            allow_empty=False, pattern=re.compile(r"^\S{16,}$"), hint="16+ characters, no spaces"
        ),
    )
    # numbers the application owns: the caller ids its calls out may show
    caller_ids: tuple[str, ...] = key((), _list_rule(_number_rule, allow_empty=True))
    # Request-URI users (numbers as digits, or names) that are this application's: a room made
    # by dialling one is its to see and control through /v1/rooms; no other may take the name
    dial_in: tuple[str, ...] = key((), _list_rule(_room_name_rule, allow_empty=True))


@dataclass(frozen=True)
class PeerDefinition:
    """Who may call in when `sip.allow_guests` is false ([[peer]] tables): a trunk by its source
    networks, a user by digest credentials (the bridge challenges with SHA-256 and MD5)."""

    name: str = required_key(
        _text_rule(
            allow_empty=False,
            pattern=re.compile(r"^[A-Za-z0-9._-]{1,64}$"),
            hint="1-64 of A-Za-z0-9._-",
        )
    )
    networks: tuple[str, ...] = key((), _list_rule(_network_rule, allow_empty=True))
    username: str = key("", _text_rule(allow_empty=True, pattern=re.compile(r"^[^\s\"\\]{1,64}$"),
                                        hint="1-64 characters, no spaces or quotes"))
    password: str = key("", _text_rule(allow_empty=True))


@dataclass(frozen=True)
class LogConfig:
    level: str = key("info", _choice_rule(LOG_LEVELS))
    format: str = key("console", _choice_rule(LOG_FORMATS))


@dataclass(frozen=True)
class RecordingConfig:
    """Room recordings (API and confctl): where the files go and what they are."""

    # relative to the working directory; made when the first recording starts
    dir: str = key("recordings", _text_rule(allow_empty=False))
    format: str = key("wav", _choice_rule(("wav", "ogg")))  # ogg: Opus in Ogg


@dataclass(frozen=True)
class DataConfig:
    dir: str = key("data", _text_rule(allow_empty=False))
    database_url: str = key(
        "",
        _text_rule(
            allow_empty=True,
            pattern=_DATABASE_URL_RE,
            hint="empty or a sqlite:// or postgresql:// URL",
        ),
    )


@dataclass(frozen=True)
class SecurityConfig:
    """Limits against guessing and flooding (`bridge.conference.lockout`)."""

    code_lockout_attempts: int = key(10, _int_rule(1, 1000))
    code_lockout_window_s: int = key(600, _int_rule(1, 86_400))
    code_lockout_s: int = key(900, _int_rule(1, 86_400))
    code_alarm_attempts: int = key(30, _int_rule(0, 100_000))
    new_dialogs_per_s: int = key(10, _int_rule(0, 100_000))  # per source; 0 = no limit
    new_dialogs_burst: int = key(50, _int_rule(1, 100_000))
    flood_action: str = key("503", _choice_rule(("503", "drop")))
    retry_after_s: int = key(5, _int_rule(1, 3600))
    allow: tuple[str, ...] = key(
        ("127.0.0.0/8", "::1/128"), _list_rule(_network_rule, allow_empty=True)
    )


@dataclass(frozen=True)
class Config:
    """The whole configuration: each field with a default_factory is a [section] of that
    dataclass, each `tables` field an array of [[tables]]. Errors list them in this order."""

    sip: SipConfig = field(default_factory=SipConfig)
    rtp: RtpConfig = field(default_factory=RtpConfig)
    rooms: RoomsConfig = field(default_factory=RoomsConfig)
    announcements: AnnouncementsConfig = field(default_factory=AnnouncementsConfig)
    keypad: KeypadConfig = field(default_factory=KeypadConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    conferences: ConferencesConfig = field(default_factory=ConferencesConfig)
    dialout: DialOutConfig = field(default_factory=DialOutConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    log: LogConfig = field(default_factory=LogConfig)
    data: DataConfig = field(default_factory=DataConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    room: tuple[RoomDefinition, ...] = tables(RoomDefinition)
    application: tuple[ApplicationDefinition, ...] = tables(ApplicationDefinition)
    peer: tuple[PeerDefinition, ...] = tables(PeerDefinition)

    @property
    def advertise_address(self) -> str:
        """The address peers should send to: a wildcard bind cannot be put in Via/Contact/SDP."""
        if self.sip.advertise:
            return self.sip.advertise
        if self.sip.bind in _UNSPECIFIED_ADDRESSES:
            return "127.0.0.1"
        return self.sip.bind

    @property
    def database_url_resolved(self) -> str:
        if self.data.database_url:
            return self.data.database_url
        return f"sqlite:///{PurePosixPath(self.data.dir) / 'confbridge.db'}"


# --------------------------------------------------------------------------- what was declared


def _rules(cls: type[Any]) -> dict[str, Rule]:
    """The rule of each key of ``cls``; a field declared without one fails at import, not later."""
    rules = {}
    for item in dataclasses.fields(cls):
        if _RULE not in item.metadata:
            raise TypeError(f"{cls.__name__}.{item.name}: declare it with key(default, rule)")
        rules[item.name] = item.metadata[_RULE]
    return rules


def _layout() -> tuple[dict[str, type[Any]], dict[str, type[Any]]]:
    """Config's [sections] and [[table arrays]], each with its dataclass, in declaration order."""
    sections: dict[str, type[Any]] = {}
    arrays: dict[str, type[Any]] = {}
    for item in dataclasses.fields(Config):
        if _TABLES in item.metadata:
            arrays[item.name] = item.metadata[_TABLES]
        elif isinstance(item.default_factory, type) and dataclasses.is_dataclass(
            item.default_factory
        ):
            sections[item.name] = item.default_factory
        else:
            raise TypeError(f"Config.{item.name}: must be a section dataclass or tables(...)")
    return sections, arrays


def _env_name(section: str, key: str) -> str:
    """CONFBRIDGE_<SECTION>_<KEY>: derived, so every declared key can be overridden."""
    return f"{ENV_PREFIX}{section}_{key}".upper()


_SECTIONS, _TABLE_ARRAYS = _layout()
_RULES: dict[str, dict[str, Rule]] = {name: _rules(cls) for name, cls in _SECTIONS.items()}
_TABLE_RULES: dict[str, dict[str, Rule]] = {
    name: _rules(cls) for name, cls in _TABLE_ARRAYS.items()
}
_ENV_KEYS: dict[str, tuple[str, str]] = {
    _env_name(section, key): (section, key) for section, rules in _RULES.items() for key in rules
}
_DEFAULTS = Config()


# --------------------------------------------------------------------------- loading


def _from_env_text(default: Any, text: str) -> Any:
    """Environment values are text: read them as the type of the field's default."""
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        return text
    if isinstance(default, int):
        stripped = text.strip()
        return int(stripped) if re.fullmatch(r"[+-]?\d+", stripped) else text
    if isinstance(default, tuple):
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _collect(
    document: Mapping[str, Any], env: Mapping[str, str]
) -> dict[str, dict[str, tuple[Any, str]]]:
    """Raw values per section and key, each with the label to name in an error."""
    raw: dict[str, dict[str, tuple[Any, str]]] = {section: {} for section in _RULES}
    for section, table in document.items():
        if section in _TABLE_ARRAYS:
            continue  # [[room]] and [[application]] tables: see _table_array
        if section not in _RULES:
            known = ", ".join([*_RULES, *_TABLE_ARRAYS])
            raise ConfigError(f"{section}: unknown section (known: {known})")
        if not isinstance(table, dict):
            raise ConfigError(f"{section}: must be a table")
        for key, value in table.items():
            if key not in _RULES[section]:
                raise ConfigError(f"{section}.{key}: unknown key")
            raw[section][key] = (value, f"{section}.{key}")
    for name, text in env.items():
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        if upper not in _ENV_KEYS:
            section, _, key = upper[len(ENV_PREFIX) :].lower().partition("_")
            if section not in _RULES:
                continue  # e.g. CONFBRIDGE_CONFIG belongs to the command line, not to us
            raise ConfigError(f"{name}: unknown key {section}.{key}")
        section, key = _ENV_KEYS[upper]
        default = getattr(getattr(_DEFAULTS, section), key)
        raw[section][key] = (_from_env_text(default, text), f"{name} ({section}.{key})")
    return raw


def _check(rules: Mapping[str, Rule], key: str, value: Any, label: str) -> Any:
    """The value as its rule reads it, or a ConfigError naming ``label``."""
    try:
        return rules[key](value)
    except _Invalid as exc:
        raise ConfigError(f"{label}: {exc}") from None


def _check_relations(config: Config) -> None:
    """Rules that tie two keys together, reported on the second one."""
    sip, rtp = config.sip, config.rtp
    if sip.t2_ms < sip.t1_ms:
        raise ConfigError(f"sip.t2_ms: must be >= sip.t1_ms ({sip.t1_ms}), got {sip.t2_ms}")
    if sip.min_se_s > sip.session_expires_s:
        raise ConfigError(
            f"sip.min_se_s: must be <= sip.session_expires_s ({sip.session_expires_s}), "
            f"got {sip.min_se_s}"
        )
    if bool(sip.tls_cert) != bool(sip.tls_key):
        raise ConfigError("sip.tls_key: give tls_cert and tls_key together (PEM files)")
    if rtp.port_max <= rtp.port_min:
        raise ConfigError(
            f"rtp.port_max: must be greater than rtp.port_min ({rtp.port_min}), got {rtp.port_max}"
        )
    if rtp.jitter_max_ms < rtp.jitter_target_ms:
        raise ConfigError(
            f"rtp.jitter_max_ms: must be >= rtp.jitter_target_ms ({rtp.jitter_target_ms}), "
            f"got {rtp.jitter_max_ms}"
        )


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Built-in defaults, overridden by the TOML file at ``path``, overridden by ``env``."""
    document = _read_toml(path) if path is not None else {}
    raw = _collect(document, os.environ if env is None else env)
    sections = {
        section: _SECTIONS[section](
            **{
                key: _check(rules, key, value, label)
                for key, (value, label) in raw[section].items()
            }
        )
        for section, rules in _RULES.items()
    }
    config = Config(
        **sections,
        room=_room_definitions(document.get("room", [])),
        application=_application_definitions(document.get("application", [])),
        peer=_peer_definitions(document.get("peer", [])),
    )
    _check_relations(config)
    return config


def _table_array(name: str, tables: Any) -> list[tuple[str, dict[str, Any]]]:
    """Validated [[name]] tables, each with its label <name>[<index>] for errors."""
    if not isinstance(tables, list):
        raise ConfigError(f"{name}: must be an array of tables ([[{name}]])")
    rules = _TABLE_RULES[name]
    validated: list[tuple[str, dict[str, Any]]] = []
    for index, table in enumerate(tables):
        label = f"{name}[{index}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{label}: must be a table")
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key not in rules:
                raise ConfigError(f"{label}.{key}: unknown key")
            values[key] = _check(rules, key, value, f"{label}.{key}")
        if "name" not in values:
            raise ConfigError(f"{label}.name: missing")
        if any(other["name"] == values["name"] for _, other in validated):
            raise ConfigError(f"{label}.name: {name} {values['name']!r} is defined twice")
        validated.append((label, values))
    return validated


def _room_definitions(tables: Any) -> tuple[RoomDefinition, ...]:
    """The [[room]] tables; errors name room[<index>].<key>."""
    rooms = []
    for label, values in _table_array("room", tables):
        room = RoomDefinition(**values)
        if room.access in ("room", "room+caller") and not room.code:
            raise ConfigError(f"{label}.code: required when access is {room.access}")
        rooms.append(room)
    return tuple(rooms)


def _application_definitions(tables: Any) -> tuple[ApplicationDefinition, ...]:
    """The [[application]] tables: tenants and their tokens, created at start if missing."""
    applications = []
    for label, values in _table_array("application", tables):
        if "token" not in values:
            raise ConfigError(f"{label}.token: missing")
        applications.append(ApplicationDefinition(**values))
    claimed: dict[str, str] = {}
    for app in applications:
        for name in app.dial_in:
            if name in claimed:
                raise ConfigError(
                    f"application {app.name!r}.dial_in: {name!r} is already {claimed[name]!r}'s"
                )
            claimed[name] = app.name
    return tuple(applications)


def _peer_definitions(tables: Any) -> tuple[PeerDefinition, ...]:
    """The [[peer]] tables: each names networks, or a username with its password."""
    peers = []
    for label, values in _table_array("peer", tables):
        if bool(values.get("username")) != bool(values.get("password")):
            raise ConfigError(f"{label}.password: give username and password together")
        if not values.get("networks") and not values.get("username"):
            raise ConfigError(f"{label}.networks: give networks, or a username and password")
        peers.append(PeerDefinition(**values))
    return tuple(peers)


def config_as_dict(config: Config) -> dict[str, dict[str, Any]]:
    """Plain nested dict (lists for tuples), e.g. for a `confctl config` dump."""
    return {
        section: {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(getattr(config, section)).items()
        }
        for section in _SECTIONS
    }
