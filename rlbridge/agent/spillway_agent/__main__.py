"""``python -m spillway_agent`` entry point (see :mod:`spillway_agent.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
