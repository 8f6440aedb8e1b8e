from lister_tui.cli import main

main()
