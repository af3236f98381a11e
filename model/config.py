"""Frozen configuration dataclasses, one per pipeline stage, and the one way files become typed values.

Every field has a default and a reason. Configs are written into run directories and
export bundles as JSON (``to_dict`` / ``from_dict``), so a run is reproducible from its files.
``from_dict`` validates with pydantic: a field a config does not have (a typo) or a value of the wrong
type is a SimGRError naming where the value came from, the field and the problem.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config

from model.errors import SimGRError, describe_errors

Uniqueness = Literal["lowest", "spread"]  # the semantic-ID uniqueness rules (model/semantic_ids/space.py)
Autocast = Literal["auto", "bf16", "off"]  # mixed precision of training steps (model/training/precision.py)

T = TypeVar("T")

STRICT_FIELDS = ConfigDict(extra="forbid")  # unknown fields are errors, never silently dropped


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}  # one pydantic validator per type, built on first use


def _adapter(cls: type[T]) -> TypeAdapter[T]:
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


def from_dict(cls: type[T], data: Any, *, origin: str | Path, what: str) -> T:
    """Validate ``data`` (parsed JSON, or flag values) into ``cls``: a config dataclass or a pydantic model.

    Lists become tuples where the field is a tuple. ``origin`` (a file, "command line") and ``what`` (the
    format's name) go into the SimGRError: ``config.json: train.epoch: unknown run config field``.
    """
    try:
        return _adapter(cls).validate_python(data)
    except ValidationError as exc:
        raise SimGRError(f"{origin}: {describe_errors(exc.errors(include_url=False), what=what)}") from None


def from_json(cls: type[T], text: str | bytes, *, origin: str | Path, what: str) -> T:
    """Like ``from_dict`` on JSON text, parsed and validated in one pass (one JSON-lines row, say)."""
    try:
        return _adapter(cls).validate_json(text)
    except ValidationError as exc:
        raise SimGRError(f"{origin}: {describe_errors(exc.errors(include_url=False), what=what)}") from None


@with_config(STRICT_FIELDS)
@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig:
    max_history: int = 20  # the paper's and LC-Rec's history window (last 20 items)
    min_user_interactions: int = 5  # k-core for users (amazon2018); leave-one-out needs >= 3
    min_item_interactions: int = 5  # k-core for items (amazon2018)
    max_text_chars: int = 2000  # LC-Rec blanks text at least this long (mostly scraped junk)


@with_config(STRICT_FIELDS)
@dataclasses.dataclass(frozen=True, kw_only=True)
class EventsConfig:
    """Column mapping of ``prepare --source events`` (a warehouse export: one row per interaction)."""

    user_col: str = ""  # user id column; "" = the first of user_id, userId, user, uid, customer_id present
    item_col: str = ""  # item id column; "" = the first of item_id, itemId, item, product_id, asin, movieId
    time_col: str = ""  # epoch s / ms (detected per file) or ISO-8601; "" = timestamp, time, ts, event_time, ...
    event_col: str = ""  # event type column; "" = every row is an interaction
    keep_events: tuple[str, ...] = ()  # with event_col: the event types kept, e.g. purchase,click (empty = all)
    keep_repeats: bool = False  # keep repeated user-item pairs (re-purchases); the Amazon recipes drop them
    item_id_col: str = ""  # item table id column; "" = the interactions' item column name
    title_col: str = "title"  # item table title column
    text_cols: tuple[str, ...] = ("description",)  # item table columns joined (after the title) into the text
    category_col: str = "categories"  # a list column, or a string split by category_sep
    category_sep: str = ","  # separator of a string category column
    batch_rows: int = 1 << 20  # rows per streamed record batch; bounds the memory of one read step


@with_config(STRICT_FIELDS)
@dataclasses.dataclass(frozen=True, kw_only=True)
class RQVAEConfig:
    """RQ-VAE semantic-ID tokenizer (TIGER, arXiv 2305.05065)."""

    hidden_dims: tuple[int, ...] = (512, 256, 128)  # MLP encoder widths; decoder mirrors them
    code_dim: int = 32  # latent dim quantized by the codebooks (TIGER and LC-Rec use 32)
    codebook_sizes: tuple[int, ...] = (256, 256, 256)  # 3 levels x 256, plus a uniqueness level
    beta: float = 0.25  # commitment weight (VQ-VAE)
    epochs: int = 200  # 1 busy CPU core: Scientific (4,344 items) 75-90 s, 1,682 items (ml-100k) ~25 s
    batch_size: int = 1024  # items per step
    lr: float = 1e-3  # AdamW, as LC-Rec/TIGER
    weight_decay: float = 1e-4  # LC-Rec's RQ-VAE setting
    kmeans_iters: int = 50  # k-means initialisation iterations per level
    dead_code_after: int = 20  # re-seed a code from live data when unused for this many epochs
    seed: int = 0  # fixes init and batch order
    kmeans_max_points: int = 65536  # k-means init sample cap; bounds init time on huge catalogs
    given_codebook_size: int = 256  # code range when re-assigning the last level of --given IDs (LC-Rec: 256)
    unique_codes: int = 256  # uniqueness-level range in the vocabulary: room for 256 items per shared tuple
    uniqueness: Uniqueness = "lowest"  # uniqueness rule (semantic_ids/space.py): counter or spread
    max_text_chars: int = 2000  # the text template's cut for items added later (DataConfig.max_text_chars)


@with_config(STRICT_FIELDS)
@dataclasses.dataclass(frozen=True, kw_only=True)
class PromptConfig:
    """How a history becomes the model input. Shared by training and serving (model/network/prompt.py)."""

    instruction: str = "Here is the list of items the user interacted with, in order. Predict the next item:"
    max_history: int = 20  # last N items kept in the prompt
    layout: Literal["tokens", "items"] = "items"  # tokens: SID tokens per item; items: one slot per item


@with_config(STRICT_FIELDS)
@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    backbone: str = "small"  # preset name (tiny|small|medium|large|xlarge|base) or a local HF checkpoint directory
    layers: Annotated[int, Field(ge=0)] = 0  # 0: the preset's depth; N: the preset with N blocks, for
    # trading depth against width under a time budget (presets only: a checkpoint keeps its own depth)
    width: Annotated[int, Field(ge=0, multiple_of=8)] = 0  # 0: the preset's hidden size; D: the preset at
    # width D with 64-wide heads and a 4D MLP (Preset.resized); a multiple of 8 keeps the rotary halves even
    lora: bool = False  # LoRA adapters (only sensible for a pretrained checkpoint)
    lora_rank: int = 8  # LC-Rec's default r
    lora_alpha: int = 32  # LC-Rec's default alpha
    lora_dropout: float = 0.05  # LC-Rec's default
    lora_target_modules: tuple[str, ...] = (
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    )  # all attention + MLP projections (Llama/Qwen names)
    aggregator: Literal["mean", "concat", "proj", "attention", "gating"] = "mean"  # paper default: mean
    tau: float = 0.07  # softmax temperature on <h, e_i>
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0  # full-softmax CE with 1 - eps on the target
    # and eps spread evenly over every item, as F.cross_entropy(label_smoothing=eps); loss=full only
    smoothing_prefix: Annotated[int, Field(ge=0)] = 0  # 0: eps over every item; k: over the items sharing the
    # target's first k semantic-ID codes (its siblings in the code tree, the target included)
    normalize: bool = True  # L2-normalise h and e_i (cosine scores); stabilises tau=0.07
    loss_chunk_items: int = 65536  # items per logsumexp chunk; bounds loss memory for huge catalogs
    loss: Literal["full", "sampled"] = "full"  # full softmax over ALL items is the paper's method
    sampled_negatives: int = 1024  # uniform negatives per batch for loss=sampled (plus in-batch targets)
    code_init: Literal["random", "codebook", "codebook-frozen"] = "random"  # code rows: see network/code_init.py

    def __post_init__(self) -> None:
        """Cross-field rules; pydantic reports a ValueError here as this config's error (``from_dict``)."""
        if self.label_smoothing and self.loss != "full":
            raise ValueError("label smoothing spreads over every item: it needs loss=full, not loss=sampled")
        if self.smoothing_prefix and not self.label_smoothing:
            raise ValueError("smoothing_prefix says where label smoothing spreads: set label_smoothing too")


@with_config(STRICT_FIELDS)
@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    epochs: int = 30  # upper bound; early stopping usually ends sooner
    lr: float = 1e-3  # AdamW learning rate (1e-3 for scratch presets; use ~1e-4 with LoRA)
    weight_decay: float = 0.01  # AdamW
    warmup_ratio: float = 0.01  # cosine schedule with 1% linear warmup
    batch_size: int = 64  # effective batch in sequences (windows)
    micro_batch_size: int = 64  # per forward; accumulation = batch_size // micro_batch_size
    grad_clip: float = 1.0  # global-norm clipping
    seed: int = 42  # fixes init, shuffling and dropout
    patience: int = 3  # epochs without validation NDCG@10 gain before stopping
    time_budget_min: float = 0.0  # stop cleanly after this many minutes (0 = no budget)
    window_stride: int = 10  # users longer than the window are cut into windows this many items apart
    size_pool: int = 32  # micro-batches pooled, sorted by example size and re-cut (train.py); 1 = plain shuffle
    eval_batch_size: int = 256  # users per forward in validation/evaluation
    eval_every: int = 1  # validate every N epochs
    max_users: int = 0  # train on the first N users only (0 = all); for smoke tests
    valid_users: int = 0  # validate on a fixed random sample of N validation users (0 = all): for a
    # baseline whose validation is a costly beam search per user and epoch (Latte)
    dropout: float = 0.1  # attention dropout for scratch presets
    hidden_dropout: float = 0.0  # on each attention/MLP block's output before the residual add (network/backbone.py)
    input_dropout: float = 0.2  # dropout on input vectors; +0.0015 test NDCG@10 on Instruments (README)
    code_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0  # each training step drops each semantic-ID
    # code of each item with this probability (one always stays) and averages the rest: the item table's
    # own dropout, mean aggregator only (network/model.py)
    ema_decay: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0  # > 0: validate and keep an exponential moving average of the weights (training/averaging.py)
    autocast: Autocast = "auto"  # bf16 mixed precision in training steps. auto: on CUDA
    # only. bf16: also on a CPU, worth it where it has AMX or AVX512-BF16 (a `large` step 1.38x on a Xeon with AMX,
    # 1.62x on an AMD EPYC with AVX512-BF16, README); emulated on a CPU without them, where a `large` step ran
    # at 0.04x fp32's speed (training/precision.py warns). Validation, evaluation and export ignore it.
    num_workers: int = 0  # DataLoader workers (tokenization is cheap; 0 keeps CPU for compute)


@with_config(STRICT_FIELDS)
@dataclasses.dataclass(frozen=True, kw_only=True)
class BaselineConfig:
    """Settings of the baselines in model/baselines (ignored by SimGR)."""

    beam_size: int = 20  # LC-Rec's test beam; the paper's Table 3 runs LC-Rec at beam 20
    latent_tokens: int = 8  # Latte's M (its README example: n_latent_tokens=8)
    latte_agg: Literal["max", "sum"] = "max"  # Latte's best aggregator (agg_max); sum = logsumexp
    sasrec_dim: int = 64  # RecBole SASRec hidden_size
    sasrec_layers: int = 2  # RecBole SASRec n_layers
    sasrec_heads: int = 2  # RecBole SASRec n_heads
    sasrec_dropout: float = 0.2  # RecBole uses 0.5; minutes-long CPU budgets underfit at 0.5
    sasrec_label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0  # CE with 1 - eps on the target,
    # eps over every item: the rule of ModelConfig.label_smoothing, so a smoothed SimGR meets a smoothed SASRec
