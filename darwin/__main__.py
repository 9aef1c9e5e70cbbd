"""``python -m darwin`` is the ``darwin`` command."""

import sys

from darwin.client.cli import main

sys.exit(main())
