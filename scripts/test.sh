#!/usr/bin/env bash
# Install what the tests need (virtualenv, SIPp, baresip) and run the whole suite: lint, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
