"""``python -m darwin.node`` is the ``darwin-node`` command."""

import sys

from darwin.launch import darwin_node

sys.exit(darwin_node())
