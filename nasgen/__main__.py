"""``python -m nasgen`` runs the command line."""

import sys

from nasgen.cli import main

sys.exit(main())
