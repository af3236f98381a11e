"""A tiny bundle whose semantic IDs come from a real (tiny) RQ-VAE over MiniLM embeddings of item text."""

from __future__ import annotations

import json
from pathlib import Path

from model.config import RQVAEConfig

WORDS = ["guitar", "strap", "microscope", "slide", "beaker", "pipette", "cable", "amplifier", "drum", "stick",
         "tuner", "capo", "flask", "burner", "scale", "glove"]
TINY_RQ = RQVAEConfig(hidden_dims=(32,), code_dim=8, codebook_sizes=(4, 4), epochs=8, batch_size=64,
                      kmeans_iters=5, unique_codes=16)


def item_title(i: int) -> str:
    return f"{WORDS[i % len(WORDS)].title()} {WORDS[(i * 7 + 3) % len(WORDS)]} model {i}"


def make_text_dataset(root: Path, *, n_items: int = 48) -> Path:
    """items.jsonl with titles, texts and categories, plus semantic IDs, code space and quantizer."""
    from model.semantic_ids.assign import build_semantic_ids

    root.mkdir(parents=True, exist_ok=True)
    with (root / "items.jsonl").open("w") as f:
        for i in range(n_items):
            cat = "music" if i % 2 == 0 else "lab"
            text = f"{item_title(i)}. Categories: {cat}. A {WORDS[i % len(WORDS)]} for daily use."
            f.write(json.dumps({"idx": i, "item_id": f"i{i}", "title": item_title(i), "text": text,
                                "categories": [cat]}) + "\n")
    (root / "dataset.json").write_text(json.dumps({"format_version": 1, "name": "t", "n_items": n_items}))
    build_semantic_ids(data_dir=root, cfg=TINY_RQ)
    return root
