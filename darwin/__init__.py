"""Darwin: a verifiable, decentralized network for LLM inference.

The distribution maps its top-level folders onto ``darwin.*`` (``protocol/`` is
``darwin.protocol``, ``model/`` is ``darwin.model`` and so on); see ``DESIGN.md``.
"""

__version__ = "0.1.0"
