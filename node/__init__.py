"""darwin.node."""
