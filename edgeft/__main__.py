"""``python -m edgeft`` = the ``edgeft`` command."""

import sys

from edgeft.cli import main

sys.exit(main())
