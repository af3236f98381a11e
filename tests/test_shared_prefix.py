"""model/network/shared_prefix.py: the instruction computed once gives the same hidden states, loss and
gradients as one full pass per prompt; the eval-mode memo is reused and dropped when training resumes."""

from __future__ import annotations

import pytest
import torch

from model.config import ModelConfig, PromptConfig
from model.data.synthetic import random_sids
from model.network.assembly import build_model
from model.network.prompt import build_prompt, collate
from model.network.shared_prefix import run_backbone, shared_prefix_len
from model.network.windows import make_windows

HISTORIES = [[1], [2, 3, 4, 5, 6, 7], [8, 9], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]]


def tiny(layout: str):
    cfg = ModelConfig(backbone="tiny")
    return build_model(cfg, PromptConfig(layout=layout), random_sids(40, seed=1), seed=0)  # type: ignore[arg-type]


def full_pass(model, batch, table):  # type: ignore[no-untyped-def]
    """The reference: every prompt through the backbone whole."""
    return model.backbone(inputs_embeds=_embeds(model, batch, table), attention_mask=batch.attention_mask).last_hidden_state


def test_shared_prefix_len_known_answer() -> None:
    built = tiny("items")
    batch = collate([build_prompt(h, built.vocab) for h in HISTORIES], pad_id=built.vocab.pad_id)
    assert shared_prefix_len(batch) == len(built.vocab.instruction_ids)  # the first item slot ends it
    one = collate([build_prompt([3], built.vocab)], pad_id=built.vocab.pad_id)
    assert shared_prefix_len(one) == len(built.vocab.instruction_ids)  # at least one position left over


@pytest.mark.parametrize("layout", ["items", "tokens"])
def test_hidden_states_equal_a_full_pass(layout: str) -> None:
    built = tiny(layout)
    model = built.model.eval()
    batch = collate([build_prompt(h, built.vocab) for h in HISTORIES], pad_id=built.vocab.pad_id)
    with torch.no_grad():
        table = model.item_embeddings()
        want = full_pass(model, batch, table)
        got = run_backbone(model.backbone, _embeds(model, batch, table), batch,
                           dropout=model.input_dropout, memo=None)
    real = batch.attention_mask.bool()
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-4)


def _embeds(model, batch, table):  # type: ignore[no-untyped-def]
    embeds = model.input_embeddings()(batch.input_ids)
    slots = batch.item_slots >= 0
    if bool(slots.any()):
        embeds = embeds.masked_scatter(slots.unsqueeze(-1), table[batch.item_slots[slots]].to(embeds.dtype))
    return embeds


def test_loss_and_gradients_equal_a_full_pass() -> None:
    built = tiny("items")
    model = built.model.train()  # the tiny preset trains without dropout, so both passes are deterministic
    windows = [w for h in HISTORIES for w in make_windows([*h, 22], built.vocab, stride=10)]
    batch = collate([w.prompt for w in windows], pad_id=built.vocab.pad_id, targets=[w.targets for w in windows])
    _, loss = model(batch)
    loss.backward()
    shared = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    table = model.item_embeddings()
    hidden = full_pass(model, batch, table)
    at = batch.targets >= 0
    h = torch.nn.functional.normalize(hidden[at], dim=-1)
    from model.network.model import full_softmax_loss

    ref = full_softmax_loss(h, table.float(), batch.targets[at], tau=model.cfg.tau, chunk=model.cfg.loss_chunk_items)
    ref.backward()
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(shared[n], p.grad, atol=1e-5, rtol=1e-3, msg=n)


def test_eval_memo_is_reused_then_dropped_by_train() -> None:
    built = tiny("items")
    model = built.model.eval()
    batch = collate([build_prompt(h, built.vocab) for h in HISTORIES], pad_id=built.vocab.pad_id)
    with torch.inference_mode():
        first = model.user_embeddings(batch)
        entry = model._prefix_memo.entry
        assert entry is not None
        again = model.user_embeddings(batch)
        assert model._prefix_memo.entry is entry  # reused, not recomputed
    torch.testing.assert_close(first, again)
    model.train()
    assert model._prefix_memo.entry is None
