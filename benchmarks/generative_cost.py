"""Generative-baseline cost benchmark (not a test), side by side in one process on a random-init model:

- training throughput of the autoregressive baseline: whole-sequence teacher forcing (one pass per window)
  vs one sequence per (history, target) sample, in targets per second of forward + backward + AdamW;
- constrained beam search: KV-cache beam vs the re-feeding reference at B=20 and B=100 (and whether their
  top-10 lists agree).

Prints ONE JSON line.

    python benchmarks/generative_cost.py --data .cache/decode_cost/data-instruments --preset small
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def _throughput(model: Any, make: Callable[[int], tuple[Any, int]], seconds: float) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    t0, done, i = time.perf_counter(), 0, 0
    while time.perf_counter() - t0 < seconds:
        batch, n = make(i)
        _, loss = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        done, i = done + n, i + 1
    return done / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="a prepared dataset directory (with semantic IDs)")
    p.add_argument("--preset", default="small")
    p.add_argument("--train-users", type=int, default=400, help="users whose sequences feed the training step")
    p.add_argument("--seconds", type=float, default=12.0, help="training time per variant")
    p.add_argument("--batch", type=int, default=64, help="windows or samples per step")
    p.add_argument("--users", type=int, default=200, help="test users for the beam timings")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    from model.progress import silence

    silence()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    from model.baselines.autoregressive import collate_sequences, history_examples, rank_beam
    from model.config import ModelConfig
    from model.network.prompt import build_prompt
    from model.training.run import RunConfig, build_from_config

    run = build_from_config(RunConfig(data_dir=str(a.data), method="autoregressive",
                                      model=ModelConfig(backbone=a.preset)))
    method, built, model = run.method, run.built, run.built.model
    seqs = run.data.train_sequences()[:a.train_users]
    windows = [w for s in seqs for w in method.examples(s, built, stride=10)]
    samples = [e for s in seqs for e in history_examples(s, built.vocab.cfg.max_history)]

    def whole(i: int) -> tuple[Any, int]:
        ws = [windows[(i * a.batch + j) % len(windows)] for j in range(a.batch)]
        return method.collate(ws, built), sum(len(w.targets) for w in ws)

    def per_target(i: int) -> tuple[Any, int]:
        ex = [samples[(i * a.batch + j) % len(samples)] for j in range(a.batch)]
        return collate_sequences([build_prompt(e.history, built.vocab) for e in ex],
                                 [method.answer(e.target, built) for e in ex],  # type: ignore[attr-defined]
                                 built.vocab.pad_id), len(ex)

    res: dict[str, Any] = {"preset": a.preset, "threads": a.threads, "dataset": run.data.info.name,
                           "targets_per_s_whole_sequence": round(_throughput(model, whole, a.seconds), 1),
                           "targets_per_s_per_target": round(_throughput(model, per_target, a.seconds), 1)}
    res["teacher_forcing_speedup"] = round(res["targets_per_s_whole_sequence"] / res["targets_per_s_per_target"], 2)
    model.eval()
    hist, _ = run.data.eval_examples("test", max_history=built.vocab.cfg.max_history)
    hist = hist[:a.users]
    rank_beam(built, hist[:8], k=10, beam=20)  # warm-up
    for beam in (20, 100):
        tops = {}
        for cache in (True, False):
            t0 = time.perf_counter()
            tops[cache] = rank_beam(built, hist, k=10, beam=beam, cache=cache)
            res[f"seconds_beam{beam}_{'kv' if cache else 'refeed'}"] = round(time.perf_counter() - t0, 3)
        res[f"same_lists_beam{beam}"] = bool((tops[True] == tops[False]).all())
    res["users"] = len(hist)
    sys.stdout.write(json.dumps(res, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
