"""``python -m demo``: serve the demo client (see demo/serve.py)."""

import sys

from demo.serve import main

sys.exit(main())
