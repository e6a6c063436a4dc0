"""``python -m pelbiot`` runs the CLI."""

from pelbiot.cli.main import main

main()
