#!/usr/bin/env bash
# Set up .venv (the runtime dependencies only, no extras) and start the bridge on the defaults of
# configs/default.toml (SIP on UDP and TCP 5060, RTP 20000-29998, data under ./data). Extra
# arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p data
exec .venv/bin/confbridge serve --config configs/default.toml "$@"
