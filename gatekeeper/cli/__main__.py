"""``python -m gatekeeper.cli``: the ``gatekeeper`` command without its console script."""

import sys

from . import main

sys.exit(main())
