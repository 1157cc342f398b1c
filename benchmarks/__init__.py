"""Benchmarks against a hand-written PyTorch loop (and the HF Trainer when installed): ``python -m benchmarks``."""
