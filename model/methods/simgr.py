"""SimGR as a method: windows scored at every item boundary, exact full ranking by inner product."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.errors import SimGRError
from model.network.assembly import Assembled, build_model
from model.network.code_init import init_code_rows, quantizer_codebooks
from model.network.prompt import PromptBatch, collate
from model.network.ranking import rank_users
from model.network.windows import Window, make_windows
from model.semantic_ids.assign import tokens_to_codes
from model.semantic_ids.space import load_sid_space


class SimGRMethod:
    name = "simgr"

    def build(self, cfg: Any, sids: Sequence[Sequence[str]]) -> Assembled:
        space = load_sid_space(Path(cfg.data_dir), tokens_to_codes(sids))  # every code is a token
        built = build_model(cfg.model, cfg.prompt, sids, dropout=cfg.train.dropout,
                            hidden_dropout=cfg.train.hidden_dropout, input_dropout=cfg.train.input_dropout,
                            code_dropout=cfg.train.code_dropout,
                            seed=cfg.train.seed, space=space)
        if cfg.model.code_init != "random":
            if cfg.model.lora:
                raise SimGRError("code_init 'codebook' is for scratch presets: LoRA keeps the pretrained rows")
            init_code_rows(built, quantizer_codebooks(Path(cfg.data_dir)), levels=len(space.sizes),
                           seed=cfg.train.seed, frozen=cfg.model.code_init == "codebook-frozen")
        return built

    def examples(self, sequence: Sequence[int], built: Assembled, *, stride: int) -> list[Window]:
        return make_windows(sequence, built.vocab, stride=stride)

    def n_targets(self, example: Window) -> int:
        return len(example.targets)

    def size(self, example: Window, built: Assembled) -> int:
        return len(example.prompt.input_ids)

    def collate(self, examples: Sequence[Window], built: Assembled) -> PromptBatch:
        return collate([w.prompt for w in examples], pad_id=built.vocab.pad_id,
                       targets=[w.targets for w in examples])

    def rank(self, built: Assembled, histories: Sequence[Sequence[int]], *, k: int, batch_size: int,
             device: torch.device | str, desc: str = "rank") -> np.ndarray:
        return rank_users(built.model, built.vocab, histories, k=k, batch_size=batch_size, device=device,
                          desc=desc)
