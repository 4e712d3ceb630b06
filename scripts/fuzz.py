"""Coverage-guided fuzzing (atheris) of everything that reads bytes or JSON from outside:

  sip        the SIP user agent's whole input path (parse, validate, transactions, dialogs)
  flood      the per-source limit's raw-byte reader (runs before any parsing)
  sdp        SDP parsing and offer negotiation
  rtp        RTP/RTCP packet parsing
  rfc4733    telephone-event payloads
  api        the HTTP API's JSON bodies (native schemas) and form parameters (Hoiio)

Each target runs in its own process for --seconds, seeded with real messages (the RFC 4475
torture tests, a phone's SDP, RTP and telephone-event packets, API bodies). Anything but the
target's documented refusal (SipError, SdpError, RtpError/ValueError, a validation error) is a
crash: atheris writes the input to --artifacts and the run fails. Every crash found becomes a
regression test (tests/unit/test_fuzz_regressions.py).

    .venv/bin/python scripts/fuzz.py --seconds 600            # every target, 10 minutes each
    .venv/bin/python scripts/fuzz.py --seconds 5 --targets sip,sdp
"""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = ("sip", "flood", "sdp", "rtp", "rfc4733", "api")
EXECUTIONS = re.compile(rb"stat::number_of_executed_units:\s*(\d+)")


def seeds(target: str) -> list[bytes]:
    from bridge.rtp.packet import build_rtp
    from bridge.rtp.telephone_event import encode_telephone_event

    torture = sorted((ROOT / "tests" / "data" / "rfc4475").glob("*.dat"))
    sdp = (
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 "
        b"telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
    )
    if target in ("sip", "flood"):
        return [p.read_bytes() for p in torture]
    if target == "sdp":
        return [sdp, sdp.replace(b"RTP/AVP 0 8", b"RTP/SAVP 18")]
    if target == "rtp":
        return [build_rtp(0, 1, 160, 7, b"\xff" * 160), b"\x81\xc8" + b"\0" * 26]
    if target == "rfc4733":
        return [encode_telephone_event(5, True, 10, 800)]
    return [
        b'{"name": "standup", "access": "room", "duration_minutes": 30}',
        b'{"dest": ["+15551234567"], "caller_id": "private", "confirm": true}',
        b"app_id=acme&access_token=x&dest=%2B6511111111&room=r1",
    ]


def run_target(target: str) -> None:
    """The child process: fuzz one target until atheris stops it."""
    import atheris

    with atheris.instrument_imports(include=["bridge", "control"]):  # ours, not the libraries
        test_one = make_target(target)
    atheris.Setup(sys.argv[:1] + sys.argv[3:], test_one)
    atheris.Fuzz()


def make_target(target: str):  # type: ignore[no-untyped-def]
    if target == "sip":
        from bridge.sip.transaction import Peer
        from bridge.sip.useragent import UserAgent

        state = {"ua": UserAgent(host="127.0.0.1", udp_port=5060, tcp_port=5060), "n": 0}
        peer = Peer("127.0.0.1", 5070, "udp")

        def sip(data: bytes) -> None:
            state["n"] += 1
            if state["n"] % 1000 == 0:  # a fresh agent now and then: state stays small
                state["ua"] = UserAgent(host="127.0.0.1", udp_port=5060, tcp_port=5060)
            ua = state["ua"]
            now = state["n"] * 0.01
            ua.receive_data(data, peer, now)
            while ua.next_event() is not None:
                pass
            ua.datagrams_to_send()
            ua.handle_timer(now + 64.0)

        return sip
    if target == "flood":
        from bridge.sip.flood import FloodGuard, FloodRules

        guard = FloodGuard(FloodRules(rate=1.0, burst=2, allow=()))

        def flood(data: bytes) -> None:
            guard.check(data, "10.0.0.1", 0.0)

        return flood
    if target == "sdp":
        from bridge.sip.sdp import SdpError, negotiate_offer, parse_sdp

        def sdp(data: bytes) -> None:
            with contextlib.suppress(SdpError):
                negotiate_offer(parse_sdp(data))

        return sdp
    if target == "rtp":
        from bridge.rtp.packet import RtpError, is_rtcp, parse_rtp

        def rtp(data: bytes) -> None:
            is_rtcp(data)
            with contextlib.suppress(RtpError):
                parse_rtp(data)

        return rtp
    if target == "rfc4733":
        from bridge.rtp.telephone_event import parse_telephone_event

        def rfc4733(data: bytes) -> None:
            with contextlib.suppress(ValueError):
                parse_telephone_event(data)

        return rfc4733
    if target == "api":
        from urllib.parse import parse_qsl

        from pydantic import BaseModel, ValidationError

        from control.api import schemas
        from control.api.calls import CallRequest

        models = [m for m in vars(schemas).values()
                  if isinstance(m, type) and issubclass(m, BaseModel) and m is not BaseModel]
        models.append(CallRequest)  # fmt: skip

        def api(data: bytes) -> None:
            for model in models:
                with contextlib.suppress(ValidationError):
                    model.model_validate_json(data)
            parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True)

        return api
    raise SystemExit(f"unknown target {target!r}; known: {', '.join(TARGETS)}")


def fuzz(target: str, seconds: int, artifacts: Path) -> tuple[int, bool, str]:
    """Run one target in a child; (executions, crashed, the child's last lines)."""
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-") as corpus:
        for index, seed in enumerate(seeds(target)):
            (Path(corpus) / f"seed{index}").write_bytes(seed)
        artifacts.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, __file__, "--child", target, f"-max_total_time={seconds}",
                   "-print_final_stats=1", "-rss_limit_mb=1024", "-timeout=10",
                   f"-artifact_prefix={artifacts}/{target}-", corpus]  # fmt: skip
        done = subprocess.run(command, capture_output=True, timeout=seconds + 120)
    found = EXECUTIONS.findall(done.stderr)
    executions = int(found[-1]) if found else 0
    tail = b"\n".join(done.stderr.splitlines()[-25:]).decode(errors="replace")
    return executions, done.returncode != 0, tail


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        run_target(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="per target")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--artifacts", type=Path, default=ROOT / "fuzz-artifacts")
    args = parser.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    failed = False
    print(f"{'target':<10} {'seconds':>8} {'executions':>12}  result")
    for target in targets:
        executions, crashed, tail = fuzz(target, args.seconds, args.artifacts)
        result = "CRASH (input in " + str(args.artifacts) + ")" if crashed else "0 crashes"
        print(f"{target:<10} {args.seconds:>8} {executions:>12}  {result}", flush=True)
        if crashed:
            failed = True
            print(tail, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
