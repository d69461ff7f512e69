"""``python -m okplan ...``: the same as the ``okplan`` console script."""

import sys

from .cli import main

sys.exit(main())
