"""``python -m darwin.simulations`` is ``darwin simulate``."""

import sys

from darwin.simulations.cli import main

sys.exit(main())
