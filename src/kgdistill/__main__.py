"""``python -m kgdistill`` runs the CLI."""

from kgdistill.cli import main

main()
