#!/usr/bin/env bash
# Install what the tests need (virtualenv, SIPp, baresip) and run the whole suite: lint, then
# pytest, and at the same time every integration test that involves the media path again with
# the rooms on media worker processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
if [ $# -gt 0 ]; then
    exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
fi
# Nothing a caller sees may change with the rooms on media workers: the integration suite again
# with 2 worker processes mixing (the media backend is the only thing that differs). It runs
# beside the first pass: both mostly wait on real time (calls, seconds of audio), so together
# they use about one of the machine's cores. Left out of it: the media worker tests (on workers
# already), the load tool and benchmark smoke runs (they start their own bridges, on workers by
# default), and the tests of the SIP, HTTP and store surfaces alone, whose answers never depend
# on where rooms are mixed (schemathesis, the RFC 4475 messages on the wire, session timers,
# tenant isolation, sign-in, history, HTTP limits, first run, confctl's API commands, PostgreSQL,
# call-in peers, keepalives, trunk registration, the flood limiter and the code lockout), and
# the SIP layer's flood of 1,000 INVITEs at 500/s (timing-bound with the first pass beside it; on
# workers, 350 callers joining one room are the Aculab capacity test's).
workers_log=$(mktemp)
workers_tmp=$(mktemp -d)
CONFBRIDGE_TEST_MEDIA_WORKERS=2 .venv/bin/python -m pytest -q -p no:cacheprovider \
    --basetemp "$workers_tmp/pytest" tests/integration \
    --ignore=tests/integration/test_media_workers.py \
    --ignore=tests/integration/test_loadtest.py \
    --ignore=tests/integration/test_schemathesis.py \
    --ignore=tests/integration/test_rfc4475_wire.py \
    --ignore=tests/integration/test_session_timers.py \
    --ignore=tests/integration/test_tenant_isolation.py \
    --ignore=tests/integration/test_teaming_signin.py \
    --ignore=tests/integration/test_hoiio_history.py \
    --ignore=tests/integration/test_http_hardening.py \
    --ignore=tests/integration/test_first_run.py \
    --ignore=tests/integration/test_cli.py \
    --ignore=tests/integration/test_postgres.py \
    --ignore=tests/integration/test_call_in_peers.py \
    --ignore=tests/integration/test_keepalive.py \
    --ignore=tests/integration/test_trunks.py \
    --ignore=tests/integration/test_security_flood.py \
    --ignore=tests/integration/test_security_lockout.py \
    --deselect tests/integration/test_bad_input.py::test_flood_of_a_thousand_invites \
    >"$workers_log" 2>&1 &
workers_pass=$!
status=0
.venv/bin/python -m pytest -q -p no:cacheprovider || status=$?
wait "$workers_pass" || status=$?
echo "=== the integration suite again, rooms on 2 media workers ==="
cat "$workers_log"
rm -rf "$workers_log" "$workers_tmp"
exit "$status"
