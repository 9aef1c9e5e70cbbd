"""darwin.client."""
