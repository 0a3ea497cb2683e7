"""``python -m breastai``: the command-line interface."""

from breastai.cli import main

main()
