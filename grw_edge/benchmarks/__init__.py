"""Benchmarks: latency (this module set grows with FLOPs, memory and accuracy)."""
