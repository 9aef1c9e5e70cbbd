"""darwin.simulations: the real trust and routing code driven at internet scale.

A seeded discrete-event world (SimPy) of nodes, clients and verifiers on a WAN, with churn and
adversaries, in which every decision that matters is made by the real code: routes by
``darwin.client.route``, which hops to verify by ``darwin.client.verification.hops_to_check``,
spans by ``darwin.node.block_selection`` rules, detection odds by ``darwin.verifier.policy``, and
every score by ``darwin.ledger.reputation`` over each client's own ledger records. Tensors are
not computed and records carry stand-in signatures (``records.py``). ``docs/simulations.md``
says what is modelled, what is not, and how to reproduce the plots.
"""
