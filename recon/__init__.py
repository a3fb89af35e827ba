"""Single-view mesh reconstruction with softjax (Flax + optax)."""
