"""`simgr` command line: prepare -> semantic-ids -> train -> evaluate -> export -> serve, and `demo`.

Every subcommand is a thin wrapper over a library function; user errors (SimGRError) print one line,
``simgr: error: ...``, and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from index import IndexFormatError
from model.config import (
    BaselineConfig,
    DataConfig,
    EventsConfig,
    ModelConfig,
    PromptConfig,
    RQVAEConfig,
    TrainConfig,
    from_dict,
)
from model.data.sources.registry import FETCHED, SOURCES
from model.errors import SimGRError
from service.cli import catalog as catalog_cmd
from service.cli import checkpoint as checkpoint_cmd
from service.cli import loop_cmds, rollout
from service.cli.export import add_export_parser
from service.cli.export import emit as _emit
from service.cli.extras import add_serve_command

log = logging.getLogger("simgr")
T = TypeVar("T")

# training fields a resumed run may change (the rest come from the run's saved config.json)
_RESUME_OVERRIDES = ("epochs", "patience", "time_budget_min", "eval_every")

# dataclass field -> flag name, where the flag's public spelling differs from the field
_FLAG_ALIASES = {"layout": "input-layout"}


def _add_dataclass_flags(p: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per config field, typed from its default (choices from a Literal annotation);
    unset flags keep the dataclass default."""
    group = p.add_argument_group(cls.__name__)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + _FLAG_ALIASES.get(f.name, f.name.replace("_", "-"))
        default = f.default
        kw: dict[str, Any] = {"dest": f"{cls.__name__}.{f.name}", "default": argparse.SUPPRESS,
                              "help": f"(default: {default})"}
        if typing.get_origin(hints[f.name]) is typing.Literal:
            kw["choices"] = typing.get_args(hints[f.name])
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(default, tuple):
            elem = type(default[0]) if default else str
            group.add_argument(flag, type=_tuple_of(elem), **kw)
        else:
            group.add_argument(flag, type=type(default), **kw)


def _tuple_of(elem: type) -> Callable[[str], tuple[Any, ...]]:
    """argparse type for a comma-separated tuple flag: ``"a,b"`` -> ``(elem("a"), elem("b"))``."""

    def parse(text: str) -> tuple[Any, ...]:
        return tuple(elem(x) for x in text.split(",") if x)

    return parse


def _dataclass_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """The config ``cls`` from the flags given, validated like a config file (SimGRError on a bad value)."""
    prefix = cls.__name__ + "."
    values = {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)}
    return from_dict(cls, values, origin="command line", what=cls.__name__)


def cmd_prepare(a: argparse.Namespace) -> int:
    from model.data.prepare import prepare_dataset

    cfg = _dataclass_from_args(DataConfig, a)
    if a.source == "events" or a.interactions is not None or a.items is not None:
        _emit(loop_cmds.prepare_events_command(a, cfg, _dataclass_from_args(EventsConfig, a)))
        return 0
    _emit(prepare_dataset(source=a.source, input_path=a.input, out_dir=a.out, cfg=cfg))
    return 0


def cmd_semantic_ids(a: argparse.Namespace) -> int:
    from model.data.dataset import read_info
    from model.semantic_ids.assign import build_semantic_ids

    cfg = _dataclass_from_args(RQVAEConfig, a)
    given = a.given
    given_path = a.data / "given_sids.json"
    no_text = given is None and given_path.is_file() and not read_info(a.data).has_text
    if no_text:  # nothing to embed: the dataset's own IDs are the only sensible ones
        log.info("no item text in %s; using its given semantic IDs (%s)", a.data, given_path)
        given = given_path
    _emit(build_semantic_ids(data_dir=a.data, cfg=cfg, given=given, encoder_dir=a.encoder, device=a.device))
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from model.training.run import RunConfig, load_run_config
    from model.training.train import train

    if a.final or a.from_run is not None or a.data is None:
        cfg = loop_cmds.final_run_config(a)
    else:
        cfg = RunConfig(data_dir=str(a.data), method=a.method, model=_dataclass_from_args(ModelConfig, a),
                        prompt=_dataclass_from_args(PromptConfig, a), train=_dataclass_from_args(TrainConfig, a),
                        baseline=_dataclass_from_args(BaselineConfig, a))
    if a.resume and (a.out / "checkpoints" / "last.pt").is_file():
        # the saved config wins, except for how long to go on, which a resumed run may change
        saved = load_run_config(a.out)
        given = {k.split(".", 1)[1]: v for k, v in vars(a).items() if k.startswith("TrainConfig.")}
        extendable = {k: v for k, v in given.items() if k in _RESUME_OVERRIDES}
        resumed = dataclasses.replace(saved, train=dataclasses.replace(saved.train, **extendable))
        if dataclasses.replace(cfg, train=resumed.train).to_json() != resumed.to_json():
            log.warning("resuming %s with its saved config; only %s may change on resume", a.out,
                        ", ".join(_RESUME_OVERRIDES))
        cfg = resumed
    summary = train(cfg, a.out, resume=a.resume)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one result line
        _emit(summary)
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from model.evaluation.evaluate import evaluate_model, write_metrics
    from model.evaluation.metrics import METRIC_KEYS
    from model.training.run import load_run

    run = load_run(a.run, checkpoint=a.checkpoint)
    hist, targets = run.data.eval_examples(a.split, max_history=run.cfg.prompt.max_history)
    cats = [it.categories[-1] if it.categories else None for it in run.data.items]
    m = evaluate_model(run.method, run.built, hist, targets, batch_size=a.batch_size,
                       item_category=cats if any(cats) else None, item_popularity=run.data.popularity(),
                       desc=a.split)
    write_metrics(m, a.run, a.split)
    _emit({k: m[k] for k in (*METRIC_KEYS, "ndcg@10_by_popularity")})
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from service.cli.demo import run_demo

    return run_demo(a)


def _method_names() -> list[str]:
    from model.training.registry import method_names

    return method_names()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simgr", description="SimGR: LLM-based generative recommendation.")
    # dest differs from `serve --log-level` (a Settings field), so the two never overwrite each other
    p.add_argument("--log-level", dest="cli_log_level", default=os.environ.get("SIMGR_LOG_LEVEL", "INFO"),
                   help="logging level of the offline commands (default: $SIMGR_LOG_LEVEL or INFO)")
    sub = p.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    checkpoint_cmd.add_parser(sub, emit=_emit)
    _add_train(sub)
    _add_run_commands(sub)
    _add_demo(sub)
    add_serve_command(sub)
    loop_cmds.add_commands(sub, dataclass_flags=_add_dataclass_flags, from_args=_dataclass_from_args)
    rollout.add_parsers(sub, _emit)
    catalog_cmd.add_arguments(sub)
    return p


def _add_data_commands(sub: Any) -> None:
    s = sub.add_parser("prepare", help="normalize a dataset: ids, leave-one-out split, summary")
    s.add_argument("--source", required=True, choices=[*SOURCES, "events"],
                   help="the raw layout to read: " + "; ".join(f"{k}: {v}" for k, v in SOURCES.items())
                   + "; events: your own logs (--interactions, --items)")
    s.add_argument("--input", type=Path, help=f"input file/folder (optional for {', '.join(sorted(FETCHED))}: fetched)")
    s.add_argument("--out", required=True, type=Path, help="dataset directory to write")
    _add_dataclass_flags(s, DataConfig)
    loop_cmds.add_events_flags(s, _add_dataclass_flags)
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("semantic-ids", help="item text -> RQ-VAE semantic IDs (or take given ones)")
    s.add_argument("--data", required=True, type=Path)
    s.add_argument("--given", type=Path, help="precomputed X.index.json instead of training an RQ-VAE "
                   "(default for datasets without item text: their given_sids.json)")
    s.add_argument("--encoder", type=Path, help="local sentence-encoder folder (default: all-MiniLM-L6-v2)")
    s.add_argument("--device", default="cpu")
    _add_dataclass_flags(s, RQVAEConfig)
    s.set_defaults(func=cmd_semantic_ids)


def _add_train(sub: Any) -> None:
    s = sub.add_parser("train", help="train SimGR on a prepared dataset")
    s.add_argument("--data", type=Path, help="prepared dataset (required unless --final)")
    s.add_argument("--out", required=True, type=Path, help="run directory")
    loop_cmds.add_final_flags(s)
    s.add_argument("--method", default="simgr", choices=_method_names(), help="simgr (default) or a baseline")
    s.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from RUN_DIR/checkpoints/last.pt when present (default: on)")
    for cls in (ModelConfig, PromptConfig, TrainConfig, BaselineConfig):
        _add_dataclass_flags(s, cls)
    s.set_defaults(func=cmd_train)


def _add_run_commands(sub: Any) -> None:
    s = sub.add_parser("evaluate", help="full-ranking metrics of a run")
    s.add_argument("--run", required=True, type=Path)
    s.add_argument("--split", default="test", choices=["test", "valid"])
    s.add_argument("--checkpoint", default="best", choices=["best", "last"])
    s.add_argument("--batch-size", type=int, default=256)
    s.set_defaults(func=cmd_evaluate)

    add_export_parser(sub)

    from service.cli import compare as compare_cmd

    compare_cmd.add_parser(sub, emit=_emit)
    compare_cmd.add_quality_parser(sub, emit=_emit)


def _add_demo(sub: Any) -> None:
    s = sub.add_parser("demo", help="end to end on MovieLens-100k: prepare, IDs, train, evaluate, export")
    s.add_argument("--workdir", type=Path, default=Path("demo"))
    s.add_argument("--preset", default="small")
    s.add_argument("--time-budget-min", type=float, default=8.0)
    s.add_argument("--rqvae-epochs", type=int, default=RQVAEConfig().epochs,
                   help="RQ-VAE training epochs for the semantic IDs (a few suffice for a smoke run)")
    s.add_argument("--serve", action=argparse.BooleanOptionalAction, default=False,
                   help="serve the bundle at the end")
    s.add_argument("--port", type=int, default=8000)
    s.set_defaults(func=cmd_demo)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.cli_log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (SimGRError, IndexFormatError) as e:
        sys.stderr.write(f"simgr: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("simgr: interrupted\n")
        return 130


def _quiet_libraries() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its AVX probing is INFO-level noise


if __name__ == "__main__":
    raise SystemExit(main())
