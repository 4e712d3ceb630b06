"""Load test: simulated participants call the bridge over SIP and stream RTP; see
`bridge/tools/loadtest.py` for what it measures and `--help` for the options.

    .venv/bin/python scripts/loadtest.py --rooms 2 --per-room 5 --talkers 2 --duration 10
"""

from __future__ import annotations

import sys

from bridge.tools.loadtest import main

if __name__ == "__main__":
    sys.exit(main())
