"""``python -m tilesam``: the same as the ``tilesam`` command."""

import sys

from tilesam.cli import main

sys.exit(main())
