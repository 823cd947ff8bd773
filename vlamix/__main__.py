"""`python -m vlamix ...`, what `torchrun -m vlamix train ...` runs in every process."""

from vlamix.cli import main

main()
