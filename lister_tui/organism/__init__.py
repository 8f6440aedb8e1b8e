"""lister-tiny: the project's own model organism of list generation."""
