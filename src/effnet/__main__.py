"""`python -m effnet ...` runs the effnet command line (also what torchrun -m effnet uses)."""

from effnet.cli import run

run()
