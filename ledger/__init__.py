"""darwin.ledger."""
