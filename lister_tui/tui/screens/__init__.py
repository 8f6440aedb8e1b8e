"""Screens of the explorer."""

from lister_tui.tui.screens.error import ErrorScreen
from lister_tui.tui.screens.generate import GenerateRequest, GenerateScreen
from lister_tui.tui.screens.help import HelpScreen
from lister_tui.tui.screens.main import MainScreen
from lister_tui.tui.screens.matrix import MatrixScreen

__all__ = ["ErrorScreen", "GenerateRequest", "GenerateScreen", "HelpScreen", "MainScreen", "MatrixScreen"]
