"""Stage 3, the SimGR network: backbone, prompt builder, aggregators, training windows, ranking."""
