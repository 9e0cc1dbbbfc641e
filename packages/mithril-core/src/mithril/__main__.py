"""``python -m mithril``: the command line (:mod:`mithril.cli`)."""

import sys

from mithril.cli import main

if __name__ == "__main__":
    sys.exit(main())
