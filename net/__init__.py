"""darwin.net."""
