#!/usr/bin/env bash
# Install what the tests need (virtualenv, SIPp, baresip) and run the whole suite: lint, then
# pytest, then every integration test again with the rooms on media worker processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
if [ $# -eq 0 ]; then
    # Nothing a caller sees may change with the rooms on media workers: the integration suite
    # again with 2 worker processes mixing (the media backend is the only thing that differs).
    # Left out: the media worker tests (on workers already) and the load tool and benchmark
    # smoke runs (they start their own bridges, on workers by default), and the tests of the
    # SIP and HTTP surfaces alone, whose answers never depend on where rooms are mixed
    # (schemathesis over the API, the RFC 4475 messages on the wire, session-timer signalling).
    CONFBRIDGE_TEST_MEDIA_WORKERS=2 exec .venv/bin/python -m pytest -q -p no:cacheprovider \
        tests/integration --ignore=tests/integration/test_media_workers.py \
        --ignore=tests/integration/test_loadtest.py \
        --ignore=tests/integration/test_schemathesis.py \
        --ignore=tests/integration/test_rfc4475_wire.py \
        --ignore=tests/integration/test_session_timers.py
fi
