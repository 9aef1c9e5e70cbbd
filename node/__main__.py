"""``python -m darwin.node`` is the ``darwin-node`` command."""

import sys

from darwin.node.cli import main

sys.exit(main())
