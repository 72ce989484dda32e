"""``python -m lsp.cli``: the ``apprentice`` command (editors start the server this way)."""

import sys

from lsp.cli import main

sys.exit(main())
