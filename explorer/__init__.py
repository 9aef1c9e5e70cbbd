"""darwin.explorer."""
