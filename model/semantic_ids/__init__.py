"""Stage 2, semantic IDs: item text -> MiniLM embeddings -> RQ-VAE codes -> unique IDs."""
