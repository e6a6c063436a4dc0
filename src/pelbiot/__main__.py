"""``python -m pelbiot`` runs the CLI."""

from pelbiot.cli import main

main()
