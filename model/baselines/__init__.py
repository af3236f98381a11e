"""Baselines behind the `Method` interface: SASRec, autoregressive (TIGER/LC-Rec), RPG-style parallel, Latte."""
