"""darwin.gossip."""
