"""``python -m interp.cli``: the same as the ``minigpt`` command."""

import sys

from interp.cli.main import main

sys.exit(main())
