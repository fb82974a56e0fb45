"""``python -m simulacra.cli`` runs the command line (as ``python -m simulacra`` does)."""

import sys

from simulacra.cli import main

sys.exit(main())
