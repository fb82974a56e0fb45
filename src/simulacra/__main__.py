"""``python -m simulacra`` (and ``torchrun -m simulacra``) runs the command line."""

import sys

from simulacra.cli import main

sys.exit(main())
