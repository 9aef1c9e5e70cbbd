"""``python -m darwin`` is the ``darwin`` command."""

import sys

from darwin.launch import darwin

sys.exit(darwin())
