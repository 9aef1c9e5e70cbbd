"""darwin.node.verifying."""
