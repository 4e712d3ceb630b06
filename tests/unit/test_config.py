"""Configuration loading: defaults, validation messages, environment overrides."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bridge.config import (
    ApplicationDefinition,
    Config,
    ConfigError,
    MediaConfig,
    RoomDefinition,
    RoomsConfig,
    RtpConfig,
    SipConfig,
    config_as_dict,
    load_config,
)

DEFAULT_TOML = Path(__file__).resolve().parents[2] / "configs" / "default.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), env={} if env is None else env)


def test_builtin_defaults() -> None:
    config = load_config(None, env={})
    assert config == Config()
    assert config.sip.udp_port == 5060
    assert config.rtp.codecs == ("OPUS", "G722", "PCMU", "PCMA")
    assert config.rooms.names == ()
    assert config.advertise_address == "127.0.0.1"
    assert config.database_url_resolved == "sqlite:///data/confbridge.db"


def test_shipped_default_toml_matches_dataclass_defaults() -> None:
    assert load_config(DEFAULT_TOML, env={}) == Config()


def test_shipped_default_toml_lists_exactly_the_declared_keys_and_defaults() -> None:
    """default.toml documents every key: one declared in the dataclasses only fails here."""
    document = tomllib.loads(DEFAULT_TOML.read_text())
    declared = config_as_dict(Config())
    assert sorted(document) == sorted(declared)
    for section, values in declared.items():
        assert document[section] == values, f"[{section}] of default.toml differs from its defaults"


def commented_example(name: str) -> str:
    """The commented-out [[name]] example of default.toml, uncommented."""
    lines = DEFAULT_TOML.read_text().splitlines()
    block = []
    for line in lines[lines.index(f"# [[{name}]]") :]:
        if not line.startswith("# "):
            break
        block.append(line.removeprefix("# "))
    return "\n".join(block) + "\n"


@pytest.mark.parametrize(
    ("name", "definition"), [("room", RoomDefinition), ("application", ApplicationDefinition)]
)
def test_shipped_default_toml_examples_list_every_table_key(
    tmp_path: Path, name: str, definition: type[Any]
) -> None:
    """The [[room]] and [[application]] examples show every key, and are valid as shown."""
    text = commented_example(name)
    (example,) = tomllib.loads(text)[name]
    assert list(example) == [item.name for item in dataclasses.fields(definition)]
    assert len(getattr(load_text(tmp_path, text), name)) == 1


def env_text(value: Any) -> str:
    """A default spelled as an environment variable would spell it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        (section, key, value)
        for section, values in config_as_dict(Config()).items()
        for key, value in values.items()
    ],
)
def test_every_key_has_its_environment_variable(section: str, key: str, value: Any) -> None:
    """CONFBRIDGE_<SECTION>_<KEY> is derived for each declared key, read as its default's type."""
    name = f"CONFBRIDGE_{section}_{key}".upper()
    config = load_config(None, env={name: env_text(value)})
    assert config_as_dict(config)[section][key] == value


def test_file_values_are_read(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        """
[sip]
bind = "10.0.0.5"
udp_port = 0
tcp_port = 5061
[rtp]
port_min = 40000
port_max = 40100
codecs = ["pcma"]
[rooms]
auto_create = false
names = ["lobby", "team-1.b"]
[data]
dir = "/var/lib/confbridge"
""",
    )
    assert config.sip == SipConfig(bind="10.0.0.5", udp_port=0, tcp_port=5061)
    assert config.rtp == RtpConfig(port_min=40000, port_max=40100, codecs=("PCMA",))
    assert config.rooms == RoomsConfig(auto_create=False, names=("lobby", "team-1.b"))
    assert config.advertise_address == "10.0.0.5"
    assert config.database_url_resolved == "sqlite:////var/lib/confbridge/confbridge.db"


@pytest.mark.parametrize(
    ("bind", "advertise", "expected"),
    [
        ("0.0.0.0", "", "127.0.0.1"),
        ("::", "", "127.0.0.1"),
        ("192.0.2.1", "", "192.0.2.1"),
        ("0.0.0.0", "203.0.113.9", "203.0.113.9"),
        ("::1", "", "::1"),
    ],
)
def test_advertise_address(bind: str, advertise: str, expected: str) -> None:
    assert Config(sip=SipConfig(bind=bind, advertise=advertise)).advertise_address == expected


def test_explicit_database_url_wins(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[data]\ndatabase_url = "postgresql://bridge@db/confbridge"\n')
    assert config.database_url_resolved == "postgresql://bridge@db/confbridge"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[sip]\nudp_port = "abc"', "sip.udp_port: must be an integer in 0..65535, got 'abc'"),
        (
            '[security]\nallow = ["10.0.0.0/33"]',
            "security.allow: each must be an address or network like 10.0.0.0/8, got '10.0.0.0/33'",
        ),
        (
            '[security]\nflood_action = "ignore"',
            "security.flood_action: must be one of 503, drop, got 'ignore'",
        ),
        (
            "[security]\ncode_lockout_attempts = 0",
            "security.code_lockout_attempts: must be an integer in 1..1000, got 0",
        ),
        ("[sip]\nudp_port = 70000", "sip.udp_port: must be an integer in 0..65535, got 70000"),
        ("[sip]\ntcp_port = -1", "sip.tcp_port: must be an integer in 0..65535, got -1"),
        ("[sip]\nudp_port = true", "sip.udp_port: must be an integer in 0..65535, got True"),
        ("[sip]\nudp_port = 5060.0", "sip.udp_port: must be an integer in 0..65535, got 5060.0"),
        ('[sip]\nbind = "localhost"', "sip.bind: must be an IPv4 or IPv6 address, got 'localhost'"),
        ("[sip]\nbind = 5", "sip.bind: must be an IPv4 or IPv6 address, got 5"),
        ('[sip]\nadvertise = "1.2.3"', "sip.advertise: must be an IPv4 or IPv6 address"),
        ("[sip]\nt1_ms = 0", "sip.t1_ms: must be an integer in 1..10000, got 0"),
        ("[sip]\nt2_ms = 100", "sip.t2_ms: must be >= sip.t1_ms (500), got 100"),
        ("[sip]\nt4_ms = 99999", "sip.t4_ms: must be an integer in 1..60000, got 99999"),
        ("[sip]\nmax_message_bytes = 10", "sip.max_message_bytes: must be an integer in 1024.."),
        ('[sip]\nuser_agent = ""', "sip.user_agent: must be a non-empty string, got ''"),
        (
            '[sip]\nuser_agent = "x\\r\\nVia: evil"',
            "sip.user_agent: must not contain control characters",
        ),
        (
            "[rtp]\nport_min = 20001",
            "rtp.port_min: must be an even integer in 1024..65534, got 20001",
        ),
        (
            "[rtp]\nport_max = 29999",
            "rtp.port_max: must be an even integer in 1024..65534, got 29999",
        ),
        (
            "[rtp]\nport_min = 30000\nport_max = 30000",
            "rtp.port_max: must be greater than rtp.port_min (30000), got 30000",
        ),
        (
            "[rtp]\njitter_target_ms = 30",
            "rtp.jitter_target_ms: must be a multiple of 20 in 20..60, got 30",
        ),
        (
            "[rtp]\njitter_target_ms = 80",
            "rtp.jitter_target_ms: must be a multiple of 20 in 20..60, got 80",
        ),
        (
            "[rtp]\njitter_max_ms = 220",
            "rtp.jitter_max_ms: must be a multiple of 20 in 20..200, got 220",
        ),
        (
            "[rtp]\njitter_target_ms = 60\njitter_max_ms = 40",
            "rtp.jitter_max_ms: must be >= rtp.jitter_target_ms (60), got 40",
        ),
        ("[rtp]\ntimeout_s = 0", "rtp.timeout_s: must be an integer in 1..3600, got 0"),
        ("[rtp]\ncodecs = []", "rtp.codecs: must not be empty"),
        ('[rtp]\ncodecs = "PCMU"', "rtp.codecs: must be a list, got 'PCMU'"),
        (
            '[rtp]\ncodecs = ["PCMU", "G729"]',
            "rtp.codecs: each must be one of OPUS, G722, PCMU, PCMA, got 'G729'",
        ),
        ('[rtp]\ncodecs = ["PCMU", "pcmu"]', "rtp.codecs: must not repeat PCMU"),
        ('[rooms]\nauto_create = "yes"', "rooms.auto_create: must be true or false, got 'yes'"),
        ("[rooms]\nmax_participants = 1", "rooms.max_participants: must be an integer in 2..1000"),
        (
            '[rooms]\nnames = ["ok", "not ok"]',
            "rooms.names: each must match [A-Za-z0-9._-]{1,32}, got 'not ok'",
        ),
        (f'[rooms]\nnames = ["{"a" * 33}"]', "rooms.names: each must match"),
        ('[rooms]\nnames = ["a", "a"]', "rooms.names: must not repeat a"),
        (
            '[log]\nlevel = "verbose"',
            "log.level: must be one of debug, info, warning, error, got 'verbose'",
        ),
        ('[log]\nformat = "xml"', "log.format: must be one of console, json, got 'xml'"),
        ('[data]\ndir = ""', "data.dir: must be a non-empty string, got ''"),
        (
            '[data]\ndatabase_url = "mysql://x"',
            "data.database_url: must be empty or a sqlite:// or postgresql:// URL, got 'mysql://x'",
        ),
        ("[sip]\nudp_prot = 5070", "sip.udp_prot: unknown key"),
        ("[rtpp]\nport_min = 20000", "rtpp: unknown section (known: sip, rtp, rooms, "),
        ('sip = "x"', "sip: must be a table"),
    ],
)
def test_bad_file_value_names_its_key(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, toml)
    assert str(info.value).startswith(message)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[sip\n")
    with pytest.raises(ConfigError, match=r"bridge\.toml: not valid TOML"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read"):
        load_config(tmp_path / "nope.toml", env={})


def test_env_overrides_file(tmp_path: Path) -> None:
    env = {
        "CONFBRIDGE_SIP_UDP_PORT": "5070",
        "CONFBRIDGE_LOG_FORMAT": "json",
        "CONFBRIDGE_RTP_CODECS": "PCMA, PCMU",
        "CONFBRIDGE_ROOMS_AUTO_CREATE": "false",
        "CONFBRIDGE_ROOMS_NAMES": "",
        "CONFBRIDGE_DATA_DIR": "/tmp/cb",
        "CONFBRIDGE_CONFIG": "/etc/confbridge.toml",  # not a section: left to the CLI
        "PATH": "/usr/bin",
    }
    config = load_text(tmp_path, '[sip]\nudp_port = 6000\n[rooms]\nnames = ["lobby"]\n', env)
    assert config.sip.udp_port == 5070
    assert config.log.format == "json"
    assert config.rtp.codecs == ("PCMA", "PCMU")
    assert config.rooms.auto_create is False
    assert config.rooms.names == ()
    assert config.database_url_resolved == "sqlite:////tmp/cb/confbridge.db"


def test_env_without_file() -> None:
    config = load_config(None, env={"CONFBRIDGE_SIP_ADVERTISE": "198.51.100.4"})
    assert config.advertise_address == "198.51.100.4"


def test_env_none_reads_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFBRIDGE_RTP_TIMEOUT_S", "90")
    assert load_config().rtp.timeout_s == 90


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CONFBRIDGE_SIP_UDP_PORT": "abc"},
            "CONFBRIDGE_SIP_UDP_PORT (sip.udp_port): must be an integer in 0..65535, got 'abc'",
        ),
        (
            {"CONFBRIDGE_RTP_PORT_MIN": "20001"},
            "CONFBRIDGE_RTP_PORT_MIN (rtp.port_min): must be an even integer in 1024..65534",
        ),
        (
            {"CONFBRIDGE_ROOMS_AUTO_CREATE": "maybe"},
            "CONFBRIDGE_ROOMS_AUTO_CREATE (rooms.auto_create): must be true or false, got 'maybe'",
        ),
        (
            {"CONFBRIDGE_RTP_CODECS": "PCMU,G729"},
            "CONFBRIDGE_RTP_CODECS (rtp.codecs): each must be one of OPUS, G722, PCMU, PCMA, "
            "got 'G729'",
        ),
        ({"CONFBRIDGE_RTP_CODECS": ""}, "CONFBRIDGE_RTP_CODECS (rtp.codecs): must not be empty"),
        ({"CONFBRIDGE_SIP_UDPPORT": "5070"}, "CONFBRIDGE_SIP_UDPPORT: unknown key sip.udpport"),
    ],
)
def test_bad_env_value_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env=env)
    assert str(info.value).startswith(message)


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.sip.udp_port = 1  # type: ignore[misc]


def test_room_tables_are_validated_and_named_by_index(tmp_path: Path) -> None:
    good = tmp_path / "rooms.toml"
    good.write_text(
        '[[room]]\nname = "sales"\naccess = "room+caller"\ncode = "4711"\n'
        'callers = ["+441234", "alice"]\n\n[[room]]\nname = "open"\n'
    )
    config = load_config(good, env={})
    assert [r.name for r in config.room] == ["sales", "open"]
    assert config.room[0].callers == ("+441234", "alice") and config.room[1].access == "none"
    for text, message in [
        ('[[room]]\nname = "a"\naccess = "room"\n', "room[0].code: required"),
        ('[[room]]\nname = "a"\naccess = "pin"\n', "room[0].access: must be one of"),
        ('[[room]]\nname = "a"\n[[room]]\nname = "b"\ncode = "12x"\n', "room[1].code: must be"),
        ('[[room]]\nname = "a"\ncolor = 1\n', "room[0].color: unknown key"),
        ('[[room]]\naccess = "none"\n', "room[0].name: missing"),
        ('[keypad]\nleave = "99999"\n', "keypad.leave: must be up to 3 keys"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_config(bad, env={})
        assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize(
    ("toml", "workers"), [('workers = "auto"', "auto"), ("workers = 0", 0), ("workers = 64", 64)]
)
def test_media_workers(tmp_path: Path, toml: str, workers: int | str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[media]\n{toml}\n")
    assert load_config(path, env={}).media.workers == workers
    assert load_config(None, env={"CONFBRIDGE_MEDIA_WORKERS": str(workers)}).media.workers == (
        workers
    )


@pytest.mark.parametrize("value", ["65", "-1", '"many"', "true", "1.5"])
def test_bad_media_workers_names_the_key(tmp_path: Path, value: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[media]\nworkers = {value}\n")
    with pytest.raises(ConfigError, match=r'media\.workers: must be "auto" or a number'):
        load_config(path, env={})


def test_auto_media_workers_is_one_per_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert MediaConfig().worker_count == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert MediaConfig().worker_count == 0  # one core: mixing in the main process is cheaper
    assert MediaConfig(workers=2).worker_count == 2


def test_media_tick_is_vector_or_reference(tmp_path: Path) -> None:
    assert load_config(None, env={}).media.tick == "vector"
    assert load_config(None, env={"CONFBRIDGE_MEDIA_TICK": "reference"}).media.tick == "reference"
    path = tmp_path / "bridge.toml"
    path.write_text('[media]\ntick = "fast"\n')
    with pytest.raises(ConfigError, match=r"media\.tick: must be one of vector, reference"):
        load_config(path, env={})
