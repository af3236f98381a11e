"""Stage 1, data: source readers, preparation into a dataset directory, dataset loading, JSON I/O."""
