"""A driver module that calls sys.exit() when imported (tests/test_run_integrity.py)."""

import sys

sys.exit(3)
