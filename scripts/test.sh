#!/usr/bin/env bash
# Install what the tests need (virtualenv, SIPp, baresip) and run the whole suite: lint, then
# pytest, and at the same time every integration test that involves the media path again with
# the rooms on media worker processes; then the heavy tests alone.
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
# already), and the tests of the SIP, HTTP and store surfaces alone, whose answers never depend
# on where rooms are mixed (the RFC 4475 messages on the wire, session timers, tenant isolation,
# sign-in, history, HTTP limits, first run, confctl's API commands, PostgreSQL, call-in peers,
# keepalives, trunk registration and the code lockout).
# The tests marked `heavy` (fuzzing, schemathesis, the INVITE floods, 350 callers, the load tool
# and benchmark smoke runs: they keep both cores busy, and start their own bridges on workers
# where it matters) run last, alone: beside them, the timing-bound tests of the two passes failed
# now and then (late audio, retransmission timeouts), each run a different one.
workers_log=$(mktemp)
workers_tmp=$(mktemp -d)
CONFBRIDGE_TEST_MEDIA_WORKERS=2 .venv/bin/python -m pytest -q -p no:cacheprovider -m "not heavy" \
    --basetemp "$workers_tmp/pytest" tests/integration \
    --ignore=tests/integration/test_media_workers.py \
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
    --ignore=tests/integration/test_security_lockout.py \
    >"$workers_log" 2>&1 &
workers_pass=$!
status=0
.venv/bin/python -m pytest -q -p no:cacheprovider -m "not heavy" --durations=15 || status=$?
wait "$workers_pass" || status=$?
echo "=== the integration suite again, rooms on 2 media workers ==="
cat "$workers_log"
rm -rf "$workers_log" "$workers_tmp"
echo "=== the heavy tests, alone ==="
.venv/bin/python -m pytest -q -p no:cacheprovider -m heavy --durations=10 || status=$?
exit "$status"
