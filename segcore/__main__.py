"""``python -m segcore``: see segcore.cli."""

import sys

from segcore.cli import main

sys.exit(main())
