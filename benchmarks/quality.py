"""Quality benchmark (not a test): train SimGR on an LC-Rec-format dataset within a CPU budget and print
ONE JSON line with the test metrics plus train_samples_per_s, eval_users_per_s and minutes.
``ndcg@10_by_popularity`` splits the test users into thirds by their target's training count: head,
torso, tail.

    python benchmarks/quality.py --data ../shared/data/instruments --budget-min 30
    python benchmarks/quality.py --data ../shared/data/instruments --recipe instruments --seed 1
    python benchmarks/quality.py --data ../shared/data/instruments --method sasrec --sasrec-dim 256 --patience 10
    python benchmarks/quality.py --source movielens100k --patience 10 --epochs 100   # the demo's data, fetched
    python benchmarks/quality.py ... --record reports/instruments_30min/runs/NAME.json   # also a run record

Uses an LC-Rec dataset's given semantic IDs (X.index.json) when present, else, or with ``--own-ids``, or for
another ``--source``, builds RQ-VAE IDs from its item text: the project's own IDs, as Table 3's Scientific
row uses them. ``--shuffle-ids`` deals those IDs out again over the items: what is left is SimGR without the
text behind its IDs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

from model.analysis.quality_runs import current_commit, write_record
from model.config import BaselineConfig, ModelConfig, RQVAEConfig, TrainConfig
from model.data.prepare import prepare_dataset
from model.data.sources.registry import FETCHED, SOURCES
from model.errors import SimGRError
from model.evaluation.evaluate import evaluate_model, write_metrics
from model.progress import silence
from model.semantic_ids.assign import build_semantic_ids, shuffle_semantic_ids
from model.training.allocator import malloc_in_use
from model.training.run import RunConfig, load_run
from model.training.train import train

BUDGET_MIN = 30.0  # --budget-min default: the 30 CPU-minutes
EPOCH_CAP = 50  # --epochs default: the budget, not the cap, ends a 30-minute run
PATIENCE = 100  # --patience default: no early stop, so the budget or the cap ends the run

# The recipes reports/quality quotes, as the flags they add to the defaults. They are placed before the
# command line's own flags, so a flag given there wins wherever it stands (`--recipe instruments --autocast
# off` on a CPU without bf16 units). The README, reports/quality and scripts/gpu_check.sh name a recipe
# instead of copying its flags.
RECIPES: dict[str, tuple[str, ...]] = {
    # section 1: `large` from scratch, spread IDs, the three dropouts, weight average, label smoothing 0.35
    # (the best five-seed validation mean: 0.1003, against 0.0999 at 0.3 and 0.0992 at 0.2)
    "instruments": ("--preset", "large", "--dropout", "0.3", "--input-dropout", "0.3", "--hidden-dropout", "0.1",
                    "--tau", "0.1", "--ema-decay", "0.999", "--uniqueness", "spread", "--unique-codes", "1024",
                    "--autocast", "bf16", "--label-smoothing", "0.35"),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, help="the --source's input, e.g. an LC-Rec folder with X.inter.json "
                   f"(optional for {', '.join(sorted(FETCHED))}: fetched)")
    p.add_argument("--source", default="lcrec", choices=sorted(SOURCES), help="the reader of --data, as `simgr "
                   "prepare --source`")
    p.add_argument("--recipe", choices=sorted(RECIPES), help="start from a recipe's flags; flags on the command "
                   "line override them. " + "; ".join(f"{k}: {' '.join(v)}" for k, v in sorted(RECIPES.items())))
    p.add_argument("--budget-min", type=float, default=BUDGET_MIN, help="training wall-clock budget")
    p.add_argument("--method", default="simgr", choices=["simgr", "sasrec"],
                   help="sasrec: the baseline under the same budget, with --sasrec-* for its shape")
    p.add_argument("--preset", default="small", help="a preset name, or a local Hugging Face checkpoint directory "
                   "(e.g. one written by `simgr checkpoint`)")
    p.add_argument("--layers", type=int, default=ModelConfig().layers,
                   help="blocks in the --preset (0: the preset's own depth)")
    p.add_argument("--width", type=int, default=ModelConfig().width,
                   help="hidden size of the --preset (0: the preset's own width)")
    p.add_argument("--lora", action="store_true", help="LoRA adapters on a pretrained --preset directory")
    p.add_argument("--layout", default="items", choices=["items", "tokens"])
    p.add_argument("--aggregator", default="mean")
    p.add_argument("--lr", type=float, default=TrainConfig().lr)
    p.add_argument("--tau", type=float, default=ModelConfig().tau)
    p.add_argument("--label-smoothing", type=float, default=ModelConfig().label_smoothing,
                   help="eps of the full-softmax loss, SimGR's or SASRec's (the same rule)")
    p.add_argument("--smoothing-prefix", type=int, default=ModelConfig().smoothing_prefix,
                   help="k > 0: label smoothing spreads over the items sharing the target's first k codes")
    p.add_argument("--epochs", type=int, default=EPOCH_CAP, help="epoch cap; the learning rate anneals to 0 by the "
                   "cap or the budget, whichever comes first")
    p.add_argument("--patience", type=int, default=PATIENCE, help="stop after this many epochs without a validation "
                   "gain (the default lets the budget or the cap end the run)")
    p.add_argument("--dropout", type=float, default=TrainConfig().dropout, help="attention dropout (sasrec: "
                   "its one dropout)")
    p.add_argument("--input-dropout", type=float, default=TrainConfig().input_dropout)
    p.add_argument("--hidden-dropout", type=float, default=TrainConfig().hidden_dropout)
    p.add_argument("--code-dropout", type=float, default=TrainConfig().code_dropout)
    p.add_argument("--weight-decay", type=float, default=TrainConfig().weight_decay)
    p.add_argument("--ema-decay", type=float, default=TrainConfig().ema_decay, help="0 = no weight average")
    p.add_argument("--seed", type=int, default=TrainConfig().seed, help="init, batch order and dropout")
    p.add_argument("--sasrec-dim", type=int, default=BaselineConfig().sasrec_dim)
    p.add_argument("--sasrec-layers", type=int, default=BaselineConfig().sasrec_layers)
    p.add_argument("--sasrec-heads", type=int, default=BaselineConfig().sasrec_heads)
    p.add_argument("--uniqueness", default=RQVAEConfig().uniqueness, choices=["lowest", "spread"],
                   help="spread: given IDs gain a spread level (model/semantic_ids/assign.py)")
    p.add_argument("--unique-codes", type=int, default=RQVAEConfig().unique_codes)
    p.add_argument("--own-ids", action="store_true", help="build RQ-VAE IDs from the item text even where the "
                   "dataset ships X.index.json")
    p.add_argument("--shuffle-ids", action="store_true", help="deal the IDs out again over the items, seeded by "
                   "--seed: the control that measures what the text behind them is worth")
    p.add_argument("--shuffle-seed", type=int, help="with --shuffle-ids: deal the IDs by this seed instead of "
                   "--seed, to tell what a permutation does from what the init and batch order do")
    p.add_argument("--autocast", default=TrainConfig().autocast, choices=["auto", "bf16", "off"],
                   help="bf16: mixed precision on the CPU too (pays with AMX or AVX512-BF16; "
                   "model/training/precision.py)")
    p.add_argument("--workdir", type=Path, help="keep data and run here (default: a temp dir)")
    p.add_argument("--record", type=Path, help="also write the line, the command, the machine and the commit "
                   "to this new file: a run record of reports/NAME/runs/ (model/analysis/quality_runs.py)")
    return p


def parse_args(argv: list[str] | None = None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The flags, with a --recipe's flags placed before the command line's so that those win."""
    argv = sys.argv[1:] if argv is None else argv
    p = _parser()
    a = p.parse_args(argv)
    return p, p.parse_args([*RECIPES[a.recipe], *argv]) if a.recipe else a


def _run_config(a: argparse.Namespace) -> RunConfig:
    """The flags as a run, validated like the CLI's (a SimGRError names the field): SimGR's model fields, or
    SASRec's shape, dropout and smoothing in ``baseline``. Its data folder is placed by ``main``."""
    sasrec = a.method == "sasrec"
    model = {} if sasrec else {"backbone": a.preset, "layers": a.layers, "width": a.width, "lora": a.lora,
                               "aggregator": a.aggregator, "tau": a.tau, "label_smoothing": a.label_smoothing,
                               "smoothing_prefix": a.smoothing_prefix}
    baseline = {"sasrec_dim": a.sasrec_dim, "sasrec_layers": a.sasrec_layers, "sasrec_heads": a.sasrec_heads,
                "sasrec_dropout": a.dropout, "sasrec_label_smoothing": a.label_smoothing} if sasrec else {}
    train = {"epochs": a.epochs, "lr": a.lr, "time_budget_min": a.budget_min, "patience": a.patience,
             "dropout": a.dropout, "input_dropout": a.input_dropout, "hidden_dropout": a.hidden_dropout,
             "code_dropout": a.code_dropout, "weight_decay": a.weight_decay, "ema_decay": a.ema_decay,
             "seed": a.seed, "autocast": a.autocast}
    return RunConfig.from_json({"data_dir": "", "method": a.method, "model": model,
                                "prompt": {"layout": a.layout}, "train": train, "baseline": baseline},
                               origin="command line")


def _run_name(a: argparse.Namespace, ids: str) -> str:
    """One run directory per setting, so a rerun resumes or reuses its own run and no other."""
    if a.method == "sasrec":
        head = (f"run-sasrec-d{a.sasrec_dim}-l{a.sasrec_layers}-h{a.sasrec_heads}-p{a.dropout}-lr{a.lr}"
                f"-wd{a.weight_decay}" + (f"-ema{a.ema_decay}" if a.ema_decay else ""))
    else:
        head = (f"run-{Path(a.preset).name}{'-lora' if a.lora else ''}-{a.layout}-{a.aggregator}-d{a.dropout}-i{a.input_dropout}"
                f"-h{a.hidden_dropout}-t{a.tau}-lr{a.lr}-wd{a.weight_decay}"
                + (f"-ema{a.ema_decay}" if a.ema_decay else "") + ids
                + (f"-L{a.layers}" if a.layers else "") + (f"-W{a.width}" if a.width else "")
                + (f"-cd{a.code_dropout}" if a.code_dropout else ""))
    return (head + (f"-s{a.seed}" if a.seed != TrainConfig().seed else "")
            + (f"-b{a.budget_min:g}" if a.budget_min != BUDGET_MIN else "")
            + (f"-e{a.epochs}" if a.epochs != EPOCH_CAP else "")
            + (f"-{a.autocast}" if a.autocast != TrainConfig().autocast else "")
            + (f"-ls{a.label_smoothing}" if a.label_smoothing else "")
            + (f"-sp{a.smoothing_prefix}" if a.smoothing_prefix else "")
            + (f"-pat{a.patience}" if a.patience != PATIENCE else ""))


def _settings(a: argparse.Namespace) -> dict[str, object]:
    """The flags that shaped the run, echoed in its JSON line."""
    common = {"method": a.method, "recipe": a.recipe, "lr": a.lr, "weight_decay": a.weight_decay,
              "ema_decay": a.ema_decay, "dropout": a.dropout, "label_smoothing": a.label_smoothing, "threads": torch.get_num_threads(),
              "budget_min": a.budget_min, "seed": a.seed, "max_epochs": a.epochs, "patience": a.patience,
              "autocast": a.autocast, "malloc": malloc_in_use()}
    if a.source != "lcrec":  # the lines recorded before --source existed read LC-Rec folders
        common["source"] = a.source
    if a.shuffle_ids:  # as --source: absent from the lines recorded before the flag existed
        common["shuffled_ids"] = True
    if _shuffle_seed(a) not in (None, a.seed):
        common["shuffle_seed"] = a.shuffle_seed
    if a.method == "sasrec":
        return {**common, "sasrec_dim": a.sasrec_dim, "sasrec_layers": a.sasrec_layers,
                "sasrec_heads": a.sasrec_heads}
    return {**common, "preset": a.preset, "layers": a.layers, "width": a.width, "lora": a.lora, "layout": a.layout,
            "aggregator": a.aggregator, "input_dropout": a.input_dropout, "hidden_dropout": a.hidden_dropout,
            "code_dropout": a.code_dropout, "tau": a.tau,
            "uniqueness": a.uniqueness, "unique_codes": a.unique_codes, "smoothing_prefix": a.smoothing_prefix,
            "own_ids": a.own_ids}


def _shuffle_seed(a: argparse.Namespace) -> int | None:
    """The seed the IDs are dealt out by: --shuffle-seed, else --seed; None without --shuffle-ids."""
    if not a.shuffle_ids:
        return None
    return a.seed if a.shuffle_seed is None else a.shuffle_seed


def given_ids(a: argparse.Namespace) -> Path | None:
    """The LC-Rec folder's X.index.json to take the IDs from, or None to build them from the item text."""
    given = [] if a.own_ids or a.source != "lcrec" else sorted(a.data.glob("*.index.json"))
    return given[0] if given else None


def _checked(p: argparse.ArgumentParser, a: argparse.Namespace) -> tuple[RunConfig, str]:
    """Every refusal before any work (exit 2, one line): the run config, its data folder still to be placed,
    and with --record the commit the run starts with."""
    try:  # the configs' own rules, before minutes of data preparation
        cfg = _run_config(a)
    except SimGRError as exc:
        p.error(str(exc))
    if a.data is None and a.source not in FETCHED:
        p.error(f"--data is required for --source {a.source}")
    if a.shuffle_ids and a.method == "sasrec":
        p.error("--shuffle-ids deals out SimGR's semantic IDs; --method sasrec has none")
    if a.shuffle_seed is not None and not a.shuffle_ids:
        p.error("--shuffle-seed is the seed of --shuffle-ids: give both")
    if a.record is None:
        return cfg, ""
    if a.record.exists():  # a committed measurement is never overwritten
        p.error(f"--record {a.record}: already exists; record a new run under a new name")
    try:
        a.record.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        p.error(f"--record {a.record}: cannot create its folder ({exc.strerror})")
    return cfg, current_commit()


def main() -> int:
    p, a = parse_args()
    cfg, commit = _checked(p, a)
    ids = ((f"-{a.uniqueness}{a.unique_codes}" if a.uniqueness != "lowest" else "") + ("-own" if a.own_ids else "")
           + (f"-shuffled{_shuffle_seed(a)}" if a.shuffle_ids else ""))  # each seed deals the IDs its own way
    work = a.workdir or Path(tempfile.mkdtemp(prefix="simgr-quality-"))
    data_dir = work / f"data{ids}"  # one per ID rule: a kept run must find the IDs it was trained on
    cfg = dataclasses.replace(cfg, data_dir=str(data_dir))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    silence()
    t0 = time.monotonic()
    run_dir = work / _run_name(a, ids)
    try:
        prepare_dataset(source=a.source, input_path=a.data, out_dir=data_dir)
    except SimGRError as exc:  # e.g. a --data folder the --source cannot read
        p.error(str(exc))
    build_semantic_ids(data_dir=data_dir, given=given_ids(a),
                       cfg=RQVAEConfig(uniqueness=a.uniqueness, unique_codes=a.unique_codes))
    if a.shuffle_ids:
        shuffle_semantic_ids(data_dir, seed=_shuffle_seed(a))
    summary = train(cfg, run_dir, resume=True)
    log = [json.loads(x) for x in (run_dir / "train_log.jsonl").read_text().splitlines()]
    run = load_run(run_dir)
    hist, targets = run.data.eval_examples("test", max_history=cfg.prompt.max_history)
    m = evaluate_model(run.method, run.built, hist, targets, batch_size=256, item_popularity=run.data.popularity())
    write_metrics(m, run_dir, "test")
    m["ndcg@10_by_popularity"] = [round(v, 4) for v in m["ndcg@10_by_popularity"]]
    full = [r for r in log if not r.get("partial_epoch")] or log
    result = {
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()},
        "valid_ndcg@10": round(summary["best_valid_ndcg@10"], 4),
        "epochs": summary["epochs"], "best_epoch": summary["best_epoch"],
        "still_improving": summary["still_improving"],
        "train_samples_per_s": round(sum(r["train_samples_per_s"] for r in full) / len(full), 1),
        "eval_users_per_s": round(m["n_users"] / m["seconds"], 1),
        "minutes": round((time.monotonic() - t0) / 60, 2),
        **_settings(a),
    }
    sys.stdout.write(json.dumps(result) + "\n")
    if a.record is not None:
        write_record(a.record, result, commit=commit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
