"""Stage 5, training: run directories, the training loop, the method registry."""
