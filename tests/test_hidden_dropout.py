"""Hidden dropout: each attention/MLP block's output is dropped before the residual add, in training only."""

from __future__ import annotations

import pytest
import torch

from model.config import ModelConfig, TrainConfig
from model.data.synthetic import random_sids
from model.errors import SimGRError
from model.methods.simgr import SimGRMethod
from model.network.backbone import PRESETS, RESIDUAL_BRANCH_ENDS, add_hidden_dropout, build_backbone
from model.training.run import RunConfig


def _tiny(**kw: float) -> torch.nn.Module:
    torch.manual_seed(0)
    backbone, _ = build_backbone(ModelConfig(backbone="tiny"), ["<a_0>", "<a_1>"], **kw)
    return backbone


def _branch_ends(backbone: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for n, m in backbone.named_modules() if n.rsplit(".", 1)[-1] in RESIDUAL_BRANCH_ENDS]


def test_every_block_output_is_dropped_and_rescaled() -> None:
    backbone = _tiny()
    ends = _branch_ends(backbone)
    assert len(ends) == 2 * PRESETS["tiny"].num_hidden_layers  # o_proj and down_proj per layer
    before: list[torch.Tensor] = []
    after: list[torch.Tensor] = []
    for m in ends:
        m.register_forward_hook(lambda _m, _a, out: before.append(out.detach().clone()))
    assert add_hidden_dropout(backbone, 0.5) == len(ends)
    for m in ends:
        m.register_forward_hook(lambda _m, _a, out: after.append(out.detach().clone()))
    backbone.train()
    backbone(inputs_embeds=torch.randn(4, 9, PRESETS["tiny"].hidden_size))
    assert len(before) == len(after) == len(ends)
    for raw, dropped in zip(before, after, strict=True):
        kept = dropped != 0
        assert 0.35 < 1 - kept.float().mean().item() < 0.65  # about half the units dropped
        assert torch.allclose(dropped[kept], raw[kept] * 2.0)  # survivors scaled by 1 / (1 - p)


def test_eval_mode_is_the_plain_model() -> None:
    plain, dropped = _tiny(), _tiny(hidden_dropout=0.5)
    x = torch.randn(2, 7, PRESETS["tiny"].hidden_size)
    plain.eval()
    dropped.eval()
    assert torch.equal(plain(inputs_embeds=x).last_hidden_state, dropped(inputs_embeds=x).last_hidden_state)
    dropped.train()
    assert not torch.allclose(plain(inputs_embeds=x).last_hidden_state, dropped(inputs_embeds=x).last_hidden_state)


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_bad_rate_is_refused(p: float) -> None:
    with pytest.raises(SimGRError, match="hidden dropout"):
        _tiny(hidden_dropout=p)


def test_train_config_reaches_the_simgr_backbone(tmp_path) -> None:
    cfg = RunConfig(data_dir=str(tmp_path), model=ModelConfig(backbone="tiny"),
                    train=TrainConfig(hidden_dropout=0.3))
    built = SimGRMethod().build(cfg, random_sids(20, seed=0))
    hooked = [m for m in _branch_ends(built.model.backbone) if m._forward_hooks]
    assert len(hooked) == 2 * PRESETS["tiny"].num_hidden_layers
