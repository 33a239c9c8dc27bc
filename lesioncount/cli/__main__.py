"""``python -m lesioncount.cli``: the ``lesioncount`` console script."""

import sys

from lesioncount.cli import main

sys.exit(main())
