"""darwin.verifier."""
