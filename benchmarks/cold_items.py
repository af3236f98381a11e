"""Cold items benchmark (not a test): how well SimGR scores items added while serving, never trained on.

    python benchmarks/cold_items.py --data data/sci --work /tmp/cold --budget-min 4

``--data`` is a prepared dataset with item text (``simgr prepare --source lcrec --input .../scientific``).
1. Hold out a random 10% of items; remove every interaction with them (users keep the rest); semantic IDs
   (the RQ-VAE sees only the kept items' text; the code space and uniqueness rule of ``--data``'s
   sid_space.json, so ``simgr semantic-ids --uniqueness spread`` data measures spread IDs), train within
   the budget, export.
2. Add the held-out items through the catalogue path of ``PUT /items`` (quantizer -> free uniqueness code
   by the rule -> embedding -> index), once per ``added_item_levels`` policy, and once per
   ``--neighbours`` x ``--gains`` pair (``added_item_neighbours``, ``added_item_gain``: valid and test
   users; the pair is chosen on valid).
3. On the ORIGINAL test split, users whose target is a held-out item: NDCG@10 / HR@10 over the full
   catalogue for SimGR, popularity, a MiniLM text baseline (cosine between the last history item and
   every other item) and the upper bound (the normal pipeline on all items, same budget). Warm-target
   users: SimGR NDCG@10 before and after the additions, and the upper bound's on the same catalogue.
4. ``PUT /items`` of 100 new items with text to a ``simgr serve`` process (encode, quantise, embed, index): items/s.
Prints ONE JSON line. Steps whose outputs exist in ``--work`` are reused (resume after an interruption).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from index import ItemIndex
from index.catalog import Upsert
from model.config import ModelConfig, PromptConfig, RQVAEConfig, TrainConfig
from model.data.dataset import Dataset, Item
from model.data.jsonio import read_validated
from model.evaluation.metrics import hit_ranks, hit_rate, ndcg, ndcg_gains
from model.export.added import AddedEmbedding
from model.export.bundle import Bundle
from model.export.export import export_run
from model.export.items import ItemUpsert
from model.export.living import code_upserts, trained_token_rows, unique_code
from model.semantic_ids.assign import build_semantic_ids, read_item_texts
from model.semantic_ids.space import SPACE_FILE, SidSpace, sid_tokens
from model.semantic_ids.text_encoder import encode_texts_cached
from model.training.run import RunConfig
from model.training.train import train
from service.scoring import encode_and_search

VERIFY: Literal["off"] = "off"  # quality is measured here, not bundle integrity (bundles of earlier runs may lack digests)
ADMIN = "bench-admin-key"


def metrics(topk: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """NDCG@10 and HR@10 of (U, 10) rankings (exactly the evaluator's hit-rank rule), and the standard
    error of the NDCG@10 mean over these users."""
    ranks = hit_ranks(topk, targets)  # (U,) 0-based rank or -1
    gains = ndcg_gains(ranks, 10)  # (U,)
    se = float(gains.std(ddof=1) / np.sqrt(len(gains))) if len(gains) > 1 else 0.0
    return {"ndcg@10": round(ndcg(ranks, 10), 4), "hr@10": round(hit_rate(ranks, 10), 4), "ndcg@10_se": round(se, 4)}


def make_held_dataset(full: Dataset, held: set[int], out: Path) -> None:
    """``full`` without the held-out items (reindexed) and without every interaction with them."""
    if (out / "dataset.json").is_file():
        return
    out.mkdir(parents=True, exist_ok=True)
    keep = [it for it in full.items if it.idx not in held]
    new_idx = {it.idx: n for n, it in enumerate(keep)}
    with open(out / "items.jsonl", "w") as f:
        for it in keep:
            f.write(json.dumps({"idx": new_idx[it.idx], "item_id": it.item_id, "title": it.title, "text": it.text,
                                "categories": list(it.categories)}) + "\n")
    n_users = 0
    with open(out / "sequences.jsonl", "w") as f:
        for uid, seq in zip(full.user_ids, full.sequences, strict=True):
            kept = [new_idx[i] for i in seq if i not in held]
            if len(kept) >= 3:
                f.write(json.dumps({"user_id": uid, "items": kept}) + "\n")
                n_users += 1
    info = full.info.model_copy(update={"n_items": len(keep), "n_users": n_users, "name": f"{full.info.name}-held"})
    (out / "dataset.json").write_text(info.model_dump_json())


def source_recipe(data: Path) -> RQVAEConfig:
    """The RQ-VAE settings that reproduce ``data``'s code space and uniqueness rule (its sid_space.json)."""
    path = data / SPACE_FILE
    if not path.is_file():
        return RQVAEConfig()
    space = read_validated(path, SidSpace, what="semantic-ID space")
    return RQVAEConfig(codebook_sizes=space.sizes[:-1], unique_codes=space.sizes[-1], uniqueness=space.uniqueness)


def build_model(data: Path, run: Path, bundle: Path, budget_min: float, model: ModelConfig,
                recipe: RQVAEConfig) -> dict[str, Any]:
    """semantic-ids -> train (budget) -> export, each skipped when its output exists."""
    if not (data / "semantic_ids.json").is_file():
        build_semantic_ids(data_dir=data, cfg=recipe)
    summary: dict[str, Any] = {}
    if not (run / "checkpoints" / "best.pt").is_file():
        cfg = RunConfig(data_dir=str(data), model=model, prompt=PromptConfig(),
                        train=TrainConfig(time_budget_min=budget_min, epochs=50))
        summary = train(cfg, run)
    if not (bundle / "manifest.json").is_file():
        export_run(run, bundle, check_users=32)
    return summary


def rank(bundle: Bundle, histories: list[list[int]]) -> np.ndarray:
    """(U, 10) top-10 over the live catalogue by the service's encode-and-search path (an exact index;
    history items are not excluded, as in the offline evaluation)."""
    live = bundle.catalog.live_rows()
    index = ItemIndex.build(bundle.embeddings[live], ids=live)  # (N', D) under their catalogue rows
    return np.concatenate([encode_and_search(bundle, index, histories[s:s + 256], k=10).ids
                           for s in range(0, len(histories), 256)])  # (U, 10)


def code_held(bundle: Bundle, full: Dataset, held: list[int]) -> list[Upsert]:
    """The held-out items as PUT /items codes them (the bundle's quantizer over their text), coded once."""
    records = [ItemUpsert(item_id=full.items[i].item_id, text=full.items[i].text or full.items[i].title or "item")
               for i in held]
    return code_upserts(records, bundle.catalog, space=bundle.space, quantizer=bundle.quantizer)


def add_items(bundle: Bundle, changes: list[Upsert], spec: AddedEmbedding) -> Bundle:
    """The coded held-out items through the rest of the PUT /items path: unique code, embed, apply."""
    catalog, _, outcomes = bundle.catalog.apply(changes, unique=unique_code(bundle.space), embed=bundle.embedder(spec))
    assert all(o.status == "created" for o in outcomes), {o.status for o in outcomes}
    return bundle.with_catalog(catalog)


def untrained_share(bundle: Bundle, added: Bundle) -> list[float]:
    """Per level: the share of added items whose code there no trained item uses (an untrained row)."""
    trained = trained_token_rows(bundle.catalog, bundle.token_ids)
    rows = [r for r in map(added.catalog.row, added.catalog.live_rows().tolist()) if r.origin == "added"]
    ids = np.array([bundle.token_ids(sid_tokens(r.sid)) for r in rows])  # (A, L)
    return [round(float(np.mean([t not in trained for t in ids[:, lvl]])), 4) for lvl in range(ids.shape[1])]


def to_catalogue(bundle: Bundle, full: Dataset, seqs: list[list[int]]) -> list[list[int]]:
    """Original item indices -> the bundle's rows (items it does not know are dropped, as serving does)."""
    ids = full.item_ids
    return [[bundle.item_lookup[ids[i]] for i in h if ids[i] in bundle.item_lookup] or [-1] for h in seqs]


def eval_simgr(bundle: Bundle, full: Dataset, hist: list[list[int]], tgt: list[int]) -> dict[str, float]:
    h = to_catalogue(bundle, full, hist)
    ok = [n for n, x in enumerate(h) if x != [-1]]  # users left without history get popularity in serving
    topk = rank(bundle, [h[n] for n in ok])
    targets = np.array([bundle.item_lookup.get(full.item_ids[tgt[n]], -2) for n in ok])
    out = metrics(topk, targets)
    out["users"] = len(ok)
    return out


def text_baseline(full: Dataset, hist: list[list[int]], tgt: list[int], cache: Path) -> dict[str, float]:
    """MiniLM cosine between the last history item and every other item."""
    emb = encode_texts_cached(read_item_texts(full.root)[1], cache_dir=cache)  # (N, 384), the semantic-ids texts
    last = np.array([h[-1] for h in hist])
    scores = emb[last] @ emb.T  # (U, N)
    scores[np.arange(len(last)), last] = -np.inf  # not the item itself
    return metrics(np.argsort(-scores, axis=1)[:, :10], np.array(tgt))


def split_users(full: Dataset, split: Literal["valid", "test"], held: set[int]) -> dict[str, tuple[list[list[int]], list[int]]]:
    """The ``split``'s (histories, targets) of cold-target and of warm-target users."""
    hist, tgt = full.eval_examples(split, max_history=20)
    out: dict[str, tuple[list[list[int]], list[int]]] = {}
    for kind, keep in (("cold", lambda t: t in held), ("warm", lambda t: t not in held)):
        idx = [n for n, t in enumerate(tgt) if keep(t)]
        out[kind] = ([hist[n] for n in idx], [tgt[n] for n in idx])
    return out


def gain_sweep(base: Bundle, changes: list[Upsert], full: Dataset, held: set[int], gains: list[float],
               neighbours: list[int], cache: Path) -> dict[str, Any]:
    """Every (``--neighbours`` k, ``--gains`` g) on valid and test users: cold and warm NDCG@10 (levels
    "trained"). Chosen on valid: the best warm NDCG among the settings whose cold NDCG reaches the text
    baseline's there, if any."""
    users = {split: split_users(full, split, held) for split in ("valid", "test")}
    out: dict[str, Any] = {split: {"cold_text_minilm": text_baseline(full, *u["cold"], cache)["ndcg@10"],
                                   "by_gain": []} for split, u in users.items()}
    for k in neighbours:
        for g in gains:
            added = add_items(base, changes, AddedEmbedding(gain=g, neighbours=k))  # one catalogue, both splits
            for split, u in users.items():
                out[split]["by_gain"].append({"neighbours": k, "gain": g,
                                              "cold": eval_simgr(added, full, *u["cold"])["ndcg@10"],
                                              "warm": eval_simgr(added, full, *u["warm"])["ndcg@10"]})
    valid, test = out["valid"]["by_gain"], out["test"]["by_gain"]
    reach = [n for n, r in enumerate(valid) if r["cold"] >= out["valid"]["cold_text_minilm"]]
    out["chosen_on_valid"] = None
    if reach:
        best = max(reach, key=lambda n: valid[n]["warm"])
        out["chosen_on_valid"] = {"neighbours": valid[best]["neighbours"], "gain": valid[best]["gain"]}
        out["test_at_chosen"] = test[best]
    return out


def time_put(bundle_dir: Path, items: list[Item], work: Path, spec: AddedEmbedding) -> dict[str, Any]:
    """PUT /items of ``items[1:101]`` (ids prefixed ``bench-``) on a real ``simgr serve`` process, after a
    one-item PUT timed apart (``first_put_s``: the server loaded the text encoder at warm-up, so this is
    the first request's own cost); embedded as ``spec`` says, journalled under ``work``/put_state."""
    import httpx
    from serve_load import Server  # this script's folder: one way to start a server for every benchmark

    shutil.rmtree(work / "put_state", ignore_errors=True)
    flags = ("--state-dir", str(work / "put_state"), "--verify", VERIFY, "--admin-keys", ADMIN,
             "--added-item-gain", str(spec.gain), "--added-item-neighbours", str(spec.neighbours))
    body = [{"item_id": f"bench-{it.item_id}", "text": it.text or "item"} for it in items]
    with Server(bundle_dir, *flags, threads=2) as server, httpx.Client(
            base_url=f"http://127.0.0.1:{server.port}", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=300) as c:
        t0 = time.perf_counter()
        assert c.put("/items", json={"items": body[:1]}).status_code == 200  # the first request, timed apart
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = c.put("/items", json={"items": body[1:101]})
        seconds = time.perf_counter() - t0
        assert r.status_code == 200, r.text
    n = len(body[1:101])
    return {"items": n, "seconds": round(seconds, 3), "items_per_s": round(n / seconds, 1),
            "first_put_s": round(first, 2), "neighbours": spec.neighbours}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="prepared dataset with item text")
    p.add_argument("--work", type=Path, required=True, help="working directory (reused on re-runs)")
    p.add_argument("--budget-min", type=float, default=4.0, help="training minutes for EACH of the two models")
    p.add_argument("--preset", default="small")
    p.add_argument("--holdout", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--code-init", default="random", choices=["random", "codebook", "codebook-frozen"],
                   help="code rows at start, both models (model/network/code_init.py)")
    p.add_argument("--no-upper-bound", action="store_true", help="skip the warm-trained model (half the time)")
    p.add_argument("--gains", type=lambda t: [float(x) for x in t.split(",") if x], default=[1.0, 1.25, 1.5, 2.0, 3.0],
                   help="added-item gains swept on valid and test users (empty: no sweep)")
    p.add_argument("--neighbours", type=lambda t: [int(x) for x in t.split(",") if x], default=[0, 10, 20],
                   help="added-item neighbours swept with each gain (0: the code rows)")
    return p.parse_args()


def main() -> int:
    a = parse_args()
    mcfg = ModelConfig(backbone=a.preset, code_init=a.code_init)
    logging.basicConfig(level=logging.WARNING)
    t_start = time.perf_counter()
    full = Dataset.load(a.data)
    rng = np.random.default_rng(a.seed)
    held = sorted(rng.choice(full.n_items, size=round(a.holdout * full.n_items), replace=False).tolist())
    held_set = set(held)
    warm_data, held_data = a.work / "warm_data", a.work / "held_data"
    if not (warm_data / "dataset.json").is_file():
        shutil.copytree(a.data, warm_data)
    make_held_dataset(full, held_set, held_data)
    recipe = source_recipe(a.data)
    held_train = build_model(held_data, a.work / "held_run", a.work / "held_bundle", a.budget_min, mcfg, recipe)
    warm_train = {} if a.no_upper_bound else build_model(warm_data, a.work / "warm_run", a.work / "warm_bundle",
                                                         a.budget_min, mcfg, recipe)

    test = split_users(full, "test", held_set)
    (ch, ct), (wh, wt) = test["cold"], test["warm"]

    base = Bundle.load(a.work / "held_bundle", verify=VERIFY)
    out: dict[str, Any] = {"dataset": full.info.name, "n_items": full.n_items, "held_out_items": len(held),
                           "cold_target_users": len(ct), "warm_target_users": len(wt),
                           "budget_min_each": a.budget_min, "preset": a.preset, "code_init": a.code_init,
                           "uniqueness": recipe.uniqueness}
    pop = Dataset.load(held_data).popularity()
    pop_top = np.array([full.item_ids.index(base.item_ids[i]) for i in np.argsort(-pop, kind="stable")[:10]])
    out["cold_popularity"] = metrics(np.tile(pop_top, (len(ct), 1)), np.array(ct))
    out["cold_text_minilm"] = text_baseline(full, ch, ct, warm_data / "cache")
    out["warm_before_additions"] = eval_simgr(base, full, wh, wt)
    changes = code_held(base, full, held)
    for levels in ("semantic", "trained", "all"):
        added = add_items(base, changes, AddedEmbedding(levels=levels))
        out[f"cold_simgr_{levels}"] = eval_simgr(added, full, ch, ct)
        out[f"warm_after_additions_{levels}"] = eval_simgr(added, full, wh, wt)
    out["added_on_untrained_row_per_level"] = untrained_share(base, added)
    if a.gains:
        out["gain_sweep"] = gain_sweep(base, changes, full, held_set, a.gains, a.neighbours, warm_data / "cache")
    if not a.no_upper_bound:
        warm_bundle = Bundle.load(a.work / "warm_bundle", verify=VERIFY)
        out["cold_upper_bound_warm_trained"] = eval_simgr(warm_bundle, full, ch, ct)
        out["warm_upper_bound_warm_trained"] = eval_simgr(warm_bundle, full, wh, wt)  # the same larger catalogue
    chosen = (out.get("gain_sweep") or {}).get("chosen_on_valid") or {}
    out["put_items"] = time_put(a.work / "held_bundle", [full.items[i] for i in held[:101]], a.work,
                                AddedEmbedding(**chosen))
    out["train"] = {"held": held_train, "warm": warm_train}
    out["minutes"] = round((time.perf_counter() - t_start) / 60, 2)
    sys.stdout.write(json.dumps(out, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
