"""``python -m core.jsondb check|compact DATA_DIR``."""

import sys

from .store import main

sys.exit(main(sys.argv[1:]))
