#!/usr/bin/env bash
# Install what the tests need (virtualenv, SIPp, baresip) and run the whole suite: lint, then
# pytest, then the call tests again with the rooms on media worker processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
if [ $# -eq 0 ]; then
    # Nothing a caller sees may change with the rooms on media workers: the calls, keys, IVR,
    # hold and API tests again, with 2 worker processes mixing (the rest ran in-process above).
    CONFBRIDGE_TEST_MEDIA_WORKERS=2 exec .venv/bin/python -m pytest -q -p no:cacheprovider \
        tests/integration/test_audio_mix.py tests/integration/test_dtmf_ivr.py \
        tests/integration/test_call_features.py tests/integration/test_control_api.py
fi
