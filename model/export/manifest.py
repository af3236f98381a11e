"""``manifest.json``, ``model/simgr.json`` and the ``items.jsonl`` rows of an export bundle: what was
exported, from what, how to rebuild the network, and the catalogue in index order.

Parsed with pydantic (``extra="forbid"``): a typo or a field from a newer format is an error that names
the file and the field, never silently ignored.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, with_config

from index.spec import IndexSpec
from model.config import STRICT_FIELDS, ModelConfig, PromptConfig, Uniqueness, from_dict
from model.data.jsonio import read_json
from model.errors import SimGRError

AttrValue = StrictStr | StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)] | StrictBool
FORMAT_VERSION = 1  # bump when a reader of the old format could misread the new one


class TrainedOn(BaseModel):
    """Which data the exported weights saw."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: str  # the prepared dataset directory
    dataset: str | None = None  # its dataset.json name
    n_users: int = Field(ge=0)
    n_items: int = Field(ge=0)
    n_interactions: int = Field(ge=0)  # interactions in the dataset (all of them, whichever part trained)
    interactions: Literal["train_part", "all"]  # train_part: items[:-2] per user; all: tails included (--final)
    epochs: int = Field(ge=0)  # epochs trained
    from_run: str | None = None  # --final: the validated run that chose the epoch count


class FileDigest(BaseModel):
    """What one bundle file must be: its sha256 and its size (a cheap truncation check)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)  # bytes


class BundleManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = FORMAT_VERSION  # layout of the bundle directory
    model_version: str = Field(min_length=1)  # hash of weights + item table + model config
    backbone: str  # preset name or the checkpoint path the run trained from
    dim: int = Field(gt=0)  # D of user and item embeddings
    tau: float = Field(gt=0)  # softmax temperature the model trained with
    normalize: bool  # whether h and e_i are L2-normalised (cosine scores)
    aggregator: str  # how SID-token embeddings become an item embedding
    prompt: PromptConfig  # as trained; serving builds prompts with it
    n_items: int = Field(ge=0)  # rows of item_embeddings.npy and of the index
    metrics: dict[str, Any] = Field(default_factory=dict)  # the run's metrics_<split>.json, by split
    packages: dict[str, str] = Field(default_factory=dict)  # versions that wrote the bundle
    created_at: str  # UTC, ISO-8601
    dataset: str | None = None  # dataset name from dataset.json
    run: str | None = None  # run directory the bundle was exported from
    synthetic: bool = False  # a random-init bundle for tests and benchmarks
    index: IndexSpec = Field(default_factory=IndexSpec)  # item index type, parameters, measured recall@10
    trained_on: TrainedOn | None = None  # the data behind the weights (None for synthetic bundles)
    expected_quality: dict[str, Any] = Field(default_factory=dict)  # --final: the validated run's metrics by split
    # every file of the bundle but manifest.json, by POSIX path relative to the bundle root, sorted;
    # empty only in bundles written before digests existed (they load with verify="off" only)
    files: dict[str, FileDigest] = Field(default_factory=dict)
    sid_space: list[int] | None = None  # codes per semantic-ID level, every one a token (None: the items' own)
    sid_uniqueness: Uniqueness = "lowest"  # the uniqueness rule items added later follow
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
        return from_dict(cls, raw, origin=path, what="manifest")


@with_config(STRICT_FIELDS)
@dataclasses.dataclass(frozen=True, kw_only=True)
class NetworkSpec:
    """``model/simgr.json``: the configs the bundle's network was built with."""

    model: ModelConfig  # backbone preset, aggregator, tau, normalisation
    prompt: PromptConfig  # instruction, history length, layout


@with_config(STRICT_FIELDS)
@dataclasses.dataclass(frozen=True, kw_only=True)
class BundleItem:
    """One line of the bundle's ``items.jsonl``; line i is index id i."""

    idx: Annotated[int, Field(ge=0)]  # the item's index id (its row in item_embeddings.npy)
    item_id: StrictStr  # the catalogue's id, as requests name it
    sid: Annotated[list[StrictStr], Field(min_length=1)]  # semantic-ID tokens
    title: str | None = None  # display title
    text: str | None = None  # the text its semantic ID was coded from (title + categories + description)
    categories: list[StrictStr] = dataclasses.field(default_factory=list)  # for filters and per-category popularity
    attributes: dict[StrictStr, AttrValue] = dataclasses.field(default_factory=dict)  # name -> str | number | bool
    origin: Literal["trained", "added"] = "trained"  # trained: in the training catalogue; added: coded while serving
