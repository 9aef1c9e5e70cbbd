"""Darwin: a verifiable, decentralized network for LLM inference.

The distribution maps its top-level folders onto ``darwin.*`` (``protocol/`` is
``darwin.protocol``, ``model/`` is ``darwin.model`` and so on); see ``DESIGN.md``.

Importing darwin shortens how long torch's OpenMP threads spin once a parallel region is
done (``GOMP_SPINCOUNT``, unless the user set it): the nodes of a route often share a machine
with each other, the client and other work, and the spinning threads of a node that just
answered then slow down the one computing next (up to 5x per token on a loaded machine).
10 000 spins still bridge the gaps between the operators of one forward pass. It takes effect
only if torch is imported after darwin, as in the ``darwin`` and ``darwin-node`` commands
(``specs/node.md``, "Threads").
"""

import os

os.environ.setdefault("GOMP_SPINCOUNT", "10000")

__version__ = "0.1.0"
