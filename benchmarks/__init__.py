"""Benchmarks of the mailer: `make bench` (or `python -m benchmarks`). Not part of the test suite."""
