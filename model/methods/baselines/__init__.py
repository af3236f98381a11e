"""Baselines behind the Method protocol (`simgr train --method NAME`); importing registers them.

sasrec (item ids, full softmax), autoregressive (LC-Rec/TIGER beam search over a SID trie),
parallel (RPG-style per-level heads), latte (autoregressive with latent tokens)."""

from model.methods.baselines import autoregressive, latte, parallel, sasrec

__all__ = ["autoregressive", "latte", "parallel", "sasrec"]
