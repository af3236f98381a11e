"""Stage 6, export: the serving bundle (network + catalogue), written and checked."""
