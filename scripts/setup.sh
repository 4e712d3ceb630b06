#!/usr/bin/env bash
# Create the local virtualenv (.venv) and install the bridge into it: the runtime dependencies
# only (what `confbridge serve` and `confctl` import).
# With --test: also the `test` extra (pytest, ruff, the load tool's `load` extra, the PostgreSQL
# driver, aiortc and PyAV that unit tests compare against) and the real SIP peers the tests drive
# (SIPp from Debian's sip-tester, the baresip softphone, linphone's console client, ffmpeg's
# ffprobe that checks recordings, Kamailio as a proxy in front, tcpdump for the SRTP capture) and
# PostgreSQL, installed with apt when missing. The PostgreSQL tests start a throwaway server of
# their own from its binaries: setup starts or enables no server (Debian's package may start its
# default cluster, and Kamailio's its service on 5060; nothing uses them).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "${1:-}" = "--test" ]; then
    missing=()
    command -v gcc >/dev/null || missing+=(gcc)  # bridge/rtp/_rtpcols.c (setup.py)
    command -v sipp >/dev/null || missing+=(sip-tester)
    command -v baresip >/dev/null || missing+=(baresip)
    command -v espeak-ng >/dev/null || missing+=(espeak-ng)
    command -v sox >/dev/null || missing+=(sox)
    command -v kamailio >/dev/null || missing+=(kamailio)
    command -v linphonec >/dev/null || missing+=(linphone-cli)
    command -v ffprobe >/dev/null || missing+=(ffmpeg)
    command -v tcpdump >/dev/null || missing+=(tcpdump)
    compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || missing+=(postgresql)
    if [ ${#missing[@]} -gt 0 ]; then
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
    .venv/bin/python -m pip install --quiet -e '.[test]'  # after gcc: it builds setup.py's C
else
    .venv/bin/python -m pip install --quiet -e .
fi
