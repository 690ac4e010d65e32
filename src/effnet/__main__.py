"""`python -m effnet ...` runs the effnet command line (also what torchrun -m effnet uses)."""

import sys

from effnet.cli import main

sys.exit(main())
