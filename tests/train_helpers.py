"""Shared settings for the tests that train through the CLI."""

# `simgr train` flags for a tiny run on the synthetic dataset: seconds per epoch, learnable in a few epochs
TINY = ["--backbone", "tiny", "--batch-size", "16", "--micro-batch-size", "16", "--lr", "0.01"]
