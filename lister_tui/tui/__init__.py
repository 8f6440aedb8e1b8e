"""The interactive explorer (Textual). The science it shows lives in lister_tui.core."""
