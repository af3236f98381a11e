"""The interface shared by SimGR and the baselines for training and ranking (`base.Method`)."""
