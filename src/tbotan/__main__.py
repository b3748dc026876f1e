"""``python -m tbotan``: the same as the ``tbotan`` command."""

import sys

from tbotan.cli import main

sys.exit(main())
