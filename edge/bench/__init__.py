"""Benchmarks: each compares our path against a bare baseline in the same run."""
