"""``python -m maskrcnn ...`` (and ``torchrun -m maskrcnn train ...``) runs the CLI."""

import sys

from maskrcnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
