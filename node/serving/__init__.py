"""darwin.node.serving."""
