"""``python -m breastai.cli``: the same as ``breastai``."""

from breastai.cli import main

main()
