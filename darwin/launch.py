"""The entry points of the ``darwin`` and ``darwin-node`` commands.

Each makes the process-wide settings first, then imports its program, because they must be
in place before torch is imported:

- ``GOMP_SPINCOUNT=10000`` unless the user set it: torch's OpenMP threads spin 300 000 times
  after each parallel region before they sleep, and where the nodes of a route, the client and
  other work share a machine, the spinning threads of a node that just answered slow down the
  one computing next (up to 5x per token on a loaded machine; ``specs/node.md``, "Threads").
  10 000 spins still bridge the gaps between the operators of one forward pass.
"""

from __future__ import annotations

import os

__all__ = ["darwin", "darwin_node", "prepare_process"]


def prepare_process() -> None:
    """Make the settings above; call it before torch is imported."""
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")


def darwin() -> int:
    """The ``darwin`` command (also ``python -m darwin``)."""
    prepare_process()
    from darwin.client.cli import main

    status: int = main()
    return status


def darwin_node() -> int:
    """The ``darwin-node`` command (also ``python -m darwin.node``)."""
    prepare_process()
    from darwin.node.cli import main

    status: int = main()
    return status
