"""``python -m nasgen`` runs the command line."""

import sys

from nasgen.cli.main import main

sys.exit(main())
