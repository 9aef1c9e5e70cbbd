"""darwin.explorer: ``darwin explore``, a read-only, live terminal UI over a ledger.

``LedgerSource`` (``source.py``) reads the ledger without writing; ``PeerBook`` (``peers.py``)
folds its entries into the ledger's own reputation (``darwin.ledger.ReputationState``) and
counts beside it; ``ExplorerApp`` (``app.py``) hosts the peers, peer, ledger and help
screens; ``explore_command`` (``command.py``) is the command, with ``--once`` and ``--json``.
Normative text: ``specs/explorer.md``.
"""
