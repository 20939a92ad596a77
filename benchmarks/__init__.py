"""Benchmarks of stde against nested AD, jax.experimental.jet and folx.

Run with ``python -m benchmarks.run --suite NAME [--size small|paper] [--tiny]``.
"""
