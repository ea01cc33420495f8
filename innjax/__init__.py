"""innjax: introspective neural networks (INNg) in JAX."""
