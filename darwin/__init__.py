"""Darwin: a verifiable, decentralized network for LLM inference.

The distribution maps its top-level folders onto ``darwin.*`` (``protocol/`` is
``darwin.protocol``, ``model/`` is ``darwin.model`` and so on); ``docs/architecture.md`` names
each layer and what it may import. Importing darwin changes nothing in the process: the
commands' process-wide settings are made by their entry points (``darwin.launch``).
"""

__version__ = "0.1.0"
