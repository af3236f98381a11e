"""Stage 4, evaluation: full-ranking metrics over every item."""
