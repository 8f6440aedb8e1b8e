"""lister-tui: a terminal explorer for why a language model's lists end."""

__version__ = "0.1.0"
