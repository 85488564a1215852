"""The ``minigpt`` command line: one subcommand per file, registered in :mod:`interp.cli.main`.

``minigpt --help`` imports no torch: every subcommand imports the model and the analyses inside its run function.
"""

from interp.cli.main import main

__all__ = ["main"]
