"""Benchmarks of the matching core: a seeded command stream and the harness that times both books."""
