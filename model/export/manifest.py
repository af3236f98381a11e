"""``manifest.json`` of an export bundle: what was exported, from what, and how to load it.

Parsed with pydantic (``extra="forbid"``): a typo or a field from a newer format is an error that names
the file and the field, never silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model.data.jsonio import read_json
from model.errors import SimGRError

FORMAT_VERSION = 1  # bump when a reader of the old format could misread the new one


class BundleManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = FORMAT_VERSION  # layout of the bundle directory
    model_version: str = Field(min_length=1)  # hash of weights + item table + model config
    backbone: str  # preset name or the checkpoint path the run trained from
    dim: int = Field(gt=0)  # D of user and item embeddings
    tau: float = Field(gt=0)  # softmax temperature the model trained with
    normalize: bool  # whether h and e_i are L2-normalised (cosine scores)
    aggregator: str  # how SID-token embeddings become an item embedding
    prompt: dict[str, Any]  # PromptConfig as trained; serving builds prompts with it
    n_items: int = Field(ge=0)  # rows of item_embeddings.npy and of the index
    metrics: dict[str, Any] = Field(default_factory=dict)  # the run's metrics_<split>.json, by split
    packages: dict[str, str] = Field(default_factory=dict)  # versions that wrote the bundle
    created_at: str  # UTC, ISO-8601
    dataset: str | None = None  # dataset name from dataset.json
    run: str | None = None  # run directory the bundle was exported from
    synthetic: bool = False  # a random-init bundle for tests and benchmarks
    sid_space: list[int] | None = None  # codes per semantic-ID level, every one a token (None: the items' own)
    quantizer: bool = False  # quantizer/ holds the item tokenizer, so items can be added from their text
    catalog_root: str | None = None  # version of the exported bundle this catalogue descends from (None: this)
    catalog_through: str | None = None  # last catalogue change-log entry folded into this bundle

    @property
    def root(self) -> str:
        """The catalogue lineage: change-log entries written for this root apply to this bundle."""
        return self.catalog_root or self.model_version

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> BundleManifest:
        """The manifest at ``path``; SimGRError naming the file and the first bad field otherwise."""
        raw = read_json(path, missing="missing from the bundle")
        if isinstance(raw, dict) and raw.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
            raise SimGRError(f"{path}: unsupported format_version {raw.get('format_version')!r}")
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            raise SimGRError(f"{path}: {where}: {err['msg']}") from None
