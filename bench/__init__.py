"""Benchmarks for ridehail: `make bench` runs them all (see docs/benchmarks.md)."""
