"""darwin.simulations."""
