"""`python -m bridge serve --config ...` is the same as `confbridge serve --config ...`."""

import sys

from bridge.cli import main

sys.exit(main())
