"""`python -m lister_tui.cli`: the same as `lister-tui` (what `lister-tui serve` runs per browser tab)."""

from lister_tui.cli import main

main()
