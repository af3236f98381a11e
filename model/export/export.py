"""Export: write a serving bundle from a trained run (layout in model/export/bundle.py) and check that it
serves exactly what it claims."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from index import IndexChoice, IndexFormatError, ItemIndex, exact_topk
from index.catalog import CatalogRow
from model.config import to_dict
from model.data.jsonio import read_json
from model.errors import SimGRError
from model.export.atomic import check_target, staged_dir
from model.export.bundle import Bundle
from model.export.indexing import install_index, user_queries
from model.export.integrity import digest_files, seal_bundle
from model.export.items import write_items, write_popularity
from model.export.manifest import BundleManifest, NetworkSpec, TrainedOn
from model.network.backbone import merge_lora
from model.network.model import SimGR
from model.semantic_ids.assign import tokens_to_codes
from model.semantic_ids.quantizer import QUANTIZER_DIR, find_quantizer
from model.semantic_ids.space import SidSpace, load_sid_space
from model.training.run import LoadedRun, load_run

log = logging.getLogger(__name__)

_PACKAGES = ("torch", "transformers", "peft", "faiss-cpu", "numpy", "tokenizers", "simgr")


def _versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _hash_files(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def write_bundle(out: Path, *, model: SimGR, tokenizer: Any, item_ids: Sequence[str],
                 sids: Sequence[Sequence[str]], titles: Sequence[str | None], popularity: Sequence[int],
                 metrics: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                 texts: Sequence[str | None] | None = None, categories: Sequence[Sequence[str]] | None = None,
                 quantizer_dir: Path | None = None, sid_space: SidSpace | None = None) -> BundleManifest:
    """Merge LoRA, save weights + tokenizer, item table, FAISS index, popularity, the item quantizer (when
    the semantic IDs came from one) and, last, the manifest with the sha256 of every file written before
    it. ``out`` is new or empty (see ``staged_dir``)."""
    (out / "model").mkdir(parents=True, exist_ok=True)
    model = model.cpu().float().eval()
    model.backbone = merge_lora(model.backbone)
    bdir = out / "model" / "backbone"
    model.backbone.save_pretrained(bdir, safe_serialization=True)  # type: ignore[operator]
    tokenizer.save_pretrained(bdir)
    if len(model.aggregator.state_dict()):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.aggregator.state_dict().items()},
                  str(out / "model" / "aggregator.safetensors"))
    spec = NetworkSpec(model=model.cfg, prompt=model.prompt_cfg)
    (out / "model" / "simgr.json").write_text(json.dumps(to_dict(spec), indent=2) + "\n")
    with torch.inference_mode():
        emb = model.item_embeddings().float().numpy()  # (N, D)
    np.save(out / "item_embeddings.npy", emb)
    codes = tokens_to_codes(sids)
    rows = [CatalogRow(iid, tuple(c), "trained", title=t, text=texts[i] if texts else None,
                       categories=tuple(categories[i]) if categories else ())
            for i, (iid, c, t) in enumerate(zip(item_ids, codes.tolist(), titles, strict=True))]
    write_items(out / "items.jsonl", rows)
    index_spec = ItemIndex.build(emb).save(out)  # item_embeddings.npy + a flat index until export tunes one
    write_popularity(out, rows, popularity)
    if quantizer_dir is not None:
        shutil.copytree(quantizer_dir, out / QUANTIZER_DIR)
    weights = sorted(bdir.glob("*.safetensors")) + sorted((out / "model").glob("*.safetensors"))
    manifest = BundleManifest(
        model_version=_hash_files([*weights, out / "items.jsonl", out / "model" / "simgr.json"]),
        backbone=model.cfg.backbone, dim=int(emb.shape[1]), tau=model.cfg.tau,
        normalize=model.cfg.normalize, aggregator=model.cfg.aggregator,
        prompt=model.prompt_cfg, n_items=int(emb.shape[0]),
        metrics=metrics or {}, packages=_versions(),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), index=index_spec, files=digest_files(out),
        sid_space=list(sid_space.sizes) if sid_space is not None else None,
        sid_uniqueness=sid_space.uniqueness if sid_space is not None else "lowest", quantizer=quantizer_dir is not None,
        **(extra or {}),
    )
    manifest.write(out / "manifest.json")
    return manifest


def check_bundle(root: Path, histories: Sequence[Sequence[int]], *, k: int = 10, atol: float = 1e-5) -> int:
    """Load the bundle as the service does (every digest checked); for an exact index compare its top-k with
    the exact top-k over its item_embeddings.npy for each history. Ties at the k-th score may swap; anything
    else raises. An approximate index was measured against exact search when export tuned it. Returns the
    number of users checked."""
    bundle = Bundle.load(root, verify="full")
    try:
        index = ItemIndex.load(root, expect=bundle.manifest.index, matrix=bundle.embeddings)
    except IndexFormatError as e:
        raise SimGRError(str(e)) from None
    if index.ntotal != bundle.n_items or index.dim != bundle.dim:
        raise SimGRError(f"{root}: index holds {index.ntotal} x {index.dim} vectors, "
                         f"the bundle {bundle.n_items} x {bundle.dim}")
    if not index.exact:
        return 0
    q = bundle.encode_users(histories)  # (U, D)
    k = min(k, bundle.n_items)
    _, found = index.search(q, k)  # (U, k)
    exact_scores, exact_ids = exact_topk(q, bundle.embeddings, k)  # (U, k) each, best first
    for u in range(len(histories)):
        odd = disagreements(found[u], exact_ids[u], float(exact_scores[u, -1]), bundle.embeddings, q[u], atol=atol)
        if odd:
            raise SimGRError(f"{root}: index top-{k} differs from exact top-{k} for check user {u} "
                             f"(items {odd[:5]}); the bundle is inconsistent")
    return len(histories)


def disagreements(found: np.ndarray, exact: np.ndarray, kth: float, embeddings: np.ndarray, q: np.ndarray, *,
                  atol: float) -> list[int]:
    """Items in one top-k but not the other whose exact score is not within ``atol`` of the k-th score
    (ties at the k-th place may swap): found, exact (k,) ids; q (D,)."""
    a, b = set(found.tolist()), set(exact.tolist())
    if a == b:
        return []
    diff = sorted(a ^ b)
    known = [i for i in diff if 0 <= i < embeddings.shape[0]]
    scores = dict(zip(known, (embeddings[known] @ q).tolist(), strict=True))  # exact, disagreeing
    return [i for i in diff if i not in scores or abs(scores[i] - kth) > atol]


def _run_metrics(run_dir: Path) -> dict[str, Any]:
    """The run's metrics_<split>.json by split, plus its best validation NDCG@10 from training."""
    metrics: dict[str, Any] = {}
    for split in ("test", "valid"):
        path = run_dir / f"metrics_{split}.json"
        if path.is_file():
            metrics[split] = read_json(path)
    best = run_dir / "checkpoints" / "best.pt"
    if best.is_file() and "valid" not in metrics:
        state = torch.load(best, map_location="cpu", weights_only=False)
        if state.get("valid"):
            metrics["valid"] = {k: v for k, v in state["valid"].items() if isinstance(v, (int, float))}
    return metrics


def _trained_on(run: LoadedRun, run_dir: Path) -> TrainedOn:
    info = run.data.info
    log_path = run_dir / "train_log.jsonl"
    epochs = len(log_path.read_text().splitlines()) if log_path.is_file() else 0
    return TrainedOn(data_dir=run.cfg.data_dir, dataset=info.name, n_users=run.data.n_users,
                     n_items=run.data.n_items, n_interactions=sum(len(s) for s in run.data.sequences),
                     interactions="all" if run.cfg.final else "train_part", epochs=epochs,
                     from_run=run.cfg.from_run)


def export_run(run_dir: Path, out: Path, *, check_users: int = 256, seed: int = 0, force: bool = False,
               index: IndexChoice | None = None, recall_queries: int = 1000) -> dict[str, Any]:
    """Best checkpoint of ``run_dir`` -> bundle at ``out`` with the chosen item index, tuned on validation
    users; written beside ``out``, checked (an exact index == exact top-10, every digest) and only then
    renamed into place, so a failure leaves ``out`` as it was; a non-empty ``out`` needs ``force``.
    A ``--final`` run counts popularity over all interactions and carries its validated run's metrics."""
    run = load_run(run_dir, checkpoint="best")
    if run.cfg.method != "simgr":
        raise SimGRError(f"{run_dir}: a {run.cfg.method!r} run; only SimGR runs export a serving bundle")
    if out.resolve() == run_dir.resolve():
        raise SimGRError(f"{out}: export into the run directory itself would overwrite it")
    check_target(out, force=force)  # before the slow part
    items = run.data.items
    final = run.cfg.final
    popularity = np.argsort(-run.data.popularity(all_interactions=final), kind="stable").tolist()
    extra = {"dataset": run.data.info.name, "run": str(run_dir), "trained_on": _trained_on(run, run_dir),
             "expected_quality": _run_metrics(Path(run.cfg.from_run)) if final and run.cfg.from_run else {}}
    valid, _ = run.data.eval_examples("valid", max_history=run.cfg.prompt.max_history)
    hist, _ = run.data.eval_examples("test", max_history=run.cfg.prompt.max_history)
    rng = np.random.default_rng(seed)
    sample = [hist[i] for i in rng.choice(len(hist), size=min(check_users, len(hist)), replace=False)]
    space = load_sid_space(Path(run.cfg.data_dir), tokens_to_codes(run.sids))
    with staged_dir(out, force=force) as tmp:
        write_bundle(tmp, model=run.built.model, tokenizer=run.built.tokenizer, item_ids=[it.item_id for it in items],
                     sids=run.sids, titles=[it.title for it in items], popularity=popularity,
                     metrics={} if final else _run_metrics(run_dir), extra=extra,
                     texts=[it.text for it in items], categories=[it.categories for it in items],
                     quantizer_dir=find_quantizer(run_dir, Path(run.cfg.data_dir)), sid_space=space)
        bundle = Bundle.load(tmp)
        spec = install_index(tmp, bundle, index or IndexChoice(), user_queries(bundle, valid, limit=recall_queries))
        del bundle
        manifest = seal_bundle(tmp, rehash=True)  # every file in the staged bundle, the tuned index's included
        checked = check_bundle(tmp, sample)
    log.info("export check: index top-10 == exact top-10 for %d users", checked)
    return {"bundle": str(out), "model_version": manifest.model_version, "n_items": manifest.n_items,
            "dim": manifest.dim, "checked_users": checked, "index": spec.model_dump(exclude_none=True)}
