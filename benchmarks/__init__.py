"""Benchmarks of the mailer: `make bench` or `python -m benchmarks`; not part of the tests."""
