"""SimGR model: padding/batching invariance, the full-softmax loss, aggregators, and overfitting."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from model.config import ModelConfig, PromptConfig
from model.data.synthetic import random_sids
from model.errors import SimGRError
from model.network.aggregators import AGGREGATORS, make_aggregator
from model.network.assembly import build_model
from model.network.losses import prefix_groups
from model.network.model import full_softmax_loss, l2_normalize
from model.network.prompt import build_prompt, collate
from model.network.windows import make_windows

HISTORIES = [[1], [2, 3, 4, 5, 6, 7], [8, 9], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]]


def tiny(layout: str = "items", aggregator: str = "mean", n_items: int = 40, normalize: bool = True):
    cfg = ModelConfig(backbone="tiny", aggregator=aggregator, normalize=normalize)  # type: ignore[arg-type]
    return build_model(cfg, PromptConfig(layout=layout), random_sids(n_items, seed=1), seed=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("layout", ["items", "tokens"])
def test_batched_equals_unbatched(layout: str) -> None:
    built = tiny(layout)
    model, vocab = built.model.eval(), built.vocab
    with torch.inference_mode():
        batch = collate([build_prompt(h, vocab) for h in HISTORIES], pad_id=vocab.pad_id)
        together = model.user_embeddings(batch)
        for i, h in enumerate(HISTORIES):
            alone = model.user_embeddings(collate([build_prompt(h, vocab)], pad_id=vocab.pad_id))
            assert torch.allclose(together[i], alone[0], atol=1e-5), (layout, i)


def test_forward_returns_loss_only_with_targets() -> None:
    built = tiny()
    windows = make_windows([1, 2, 3, 4], built.vocab, stride=10)
    batch = collate([w.prompt for w in windows], pad_id=built.vocab.pad_id, targets=[w.targets for w in windows])
    h, loss = built.model(batch)
    assert h.shape == (1, 32)
    assert loss is not None
    assert loss.ndim == 0
    h2, none = built.model(batch._replace(targets=None))
    assert none is None
    assert torch.allclose(h, h2)


def test_full_softmax_loss_equals_cross_entropy_and_chunking_is_exact() -> None:
    g = torch.Generator().manual_seed(0)
    h, items = torch.randn(7, 16, generator=g), torch.randn(50, 16, generator=g)
    targets = torch.randint(0, 50, (7,), generator=g)
    ref = F.cross_entropy(h @ items.T / 0.07, targets)
    assert torch.allclose(full_softmax_loss(h, items, targets, tau=0.07, chunk=1000), ref, atol=1e-4)
    assert torch.allclose(full_softmax_loss(h, items, targets, tau=0.07, chunk=8), ref, atol=1e-4)


def test_mean_item_embedding_is_mean_of_sid_rows() -> None:
    built = tiny(normalize=False)
    rows = built.model.input_embeddings().weight  # (V, D)
    ids = built.model.sid_token_ids[3]
    assert torch.allclose(built.model.item_embeddings()[3], rows[ids].mean(0))


@pytest.mark.parametrize("chunk", [1000, 8])
def test_label_smoothing_equals_cross_entropy_with_smoothing(chunk: int) -> None:
    g = torch.Generator().manual_seed(1)
    h, items = torch.randn(7, 16, generator=g), torch.randn(50, 16, generator=g)
    targets = torch.randint(0, 50, (7,), generator=g)
    ref = F.cross_entropy(h @ items.T / 0.1, targets, label_smoothing=0.2)
    got = full_softmax_loss(h, items, targets, tau=0.1, chunk=chunk, smoothing=0.2)
    assert torch.allclose(got, ref, atol=1e-4)
    assert not torch.allclose(got, full_softmax_loss(h, items, targets, tau=0.1, chunk=chunk), atol=1e-3)


@pytest.mark.parametrize("chunk", [1000, 8])
def test_prefix_smoothing_spreads_over_the_targets_code_siblings(chunk: int) -> None:
    g = torch.Generator().manual_seed(2)
    tokens = torch.tensor([[0, 5], [0, 6], [0, 7], [1, 5], [1, 8], [2, 9]])  # (6, 2): groups {0,1,2} {3,4} {5}
    groups = prefix_groups(tokens, 1)
    assert groups.tolist() == [0, 0, 0, 1, 1, 2]
    h, items = torch.randn(5, 8, generator=g), torch.randn(6, 8, generator=g)
    targets = torch.tensor([0, 2, 3, 5, 4])
    eps, q = 0.3, torch.zeros(5, 6)  # the soft targets: 1 - eps on the target, eps evenly over its siblings
    for m, t in enumerate(targets.tolist()):
        siblings = (groups == groups[t]).nonzero().flatten()
        q[m, siblings] = eps / len(siblings)
        q[m, t] += 1 - eps
    ref = -(q * F.log_softmax(h @ items.T / 0.1, dim=-1)).sum(-1).mean()
    got = full_softmax_loss(h, items, targets, tau=0.1, chunk=chunk, smoothing=eps, groups=groups)
    assert torch.allclose(got, ref, atol=1e-5)
    uniform = full_softmax_loss(h, items, targets, tau=0.1, chunk=chunk, smoothing=eps)
    assert torch.allclose(uniform, full_softmax_loss(h, items, targets, tau=0.1, chunk=chunk, smoothing=eps,
                                                     groups=torch.zeros(6, dtype=torch.long)), atol=1e-5)
    assert not torch.allclose(got, uniform, atol=1e-3)


def test_a_smoothing_prefix_as_long_as_the_codes_is_refused() -> None:
    cfg = ModelConfig(backbone="tiny", label_smoothing=0.1, smoothing_prefix=9)
    with pytest.raises(SimGRError, match="must be shorter than"):
        build_model(cfg, PromptConfig(), random_sids(10, seed=1), seed=0)


@pytest.mark.parametrize(("fields", "error"), [
    ({"smoothing_prefix": 1}, "set label_smoothing too"),
    ({"loss": "sampled", "label_smoothing": 0.1}, "needs loss=full"),
])
def test_smoothing_rules_refuse_the_config_itself(fields: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        ModelConfig(backbone="tiny", **fields)  # type: ignore[arg-type]
    assert ModelConfig(backbone="tiny", label_smoothing=0.1, smoothing_prefix=1).smoothing_prefix == 1


def test_l2_normalize_matches_f_normalize_with_its_gradient() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(l2_normalize, (x,))
    up = torch.randn(6, 5, dtype=torch.float64, generator=g)
    (l2_normalize(x) * up).sum().backward()
    mine = x.grad.clone()
    x.grad = None
    (F.normalize(x, dim=-1) * up).sum().backward()
    assert torch.allclose(l2_normalize(x), F.normalize(x, dim=-1))
    assert torch.allclose(mine, x.grad)
    assert torch.equal(l2_normalize(torch.zeros(1, 3)), torch.zeros(1, 3))  # a zero row stays zero, as F.normalize


def test_mean_item_table_fast_path_equals_the_rows_mean_with_its_gradient() -> None:
    """The mean aggregator's one-pass table (embedding_bag) gives the values and embedding gradients of the
    generic path, which gathers (N, L, D) rows first (an aggregator other than MeanAggregator takes it)."""
    built = tiny()
    model = built.model
    w = torch.randn(model.n_items, generator=torch.Generator().manual_seed(3))
    fast = model.item_embeddings()  # (N, D)
    (fast @ fast[0] * w).sum().backward()
    g_fast = model.input_embeddings().weight.grad.clone()
    model.zero_grad()
    rows = model.input_embeddings()(model.sid_token_ids)  # (N, L, D)
    slow = F.normalize(rows.mean(1), dim=-1)
    (slow @ slow[0] * w).sum().backward()
    assert torch.allclose(fast, slow, atol=1e-6)
    assert torch.allclose(g_fast, model.input_embeddings().weight.grad, atol=1e-5)
    assert g_fast.abs().sum() > 0


@pytest.mark.parametrize("name", AGGREGATORS)
def test_aggregators_start_at_the_mean_and_learn(name: str) -> None:
    x = torch.randn(5, 4, 8, requires_grad=True)  # (N, L, D)
    agg = make_aggregator(name, dim=8, levels=4)
    out = agg(x)
    assert out.shape == (5, 8)
    assert torch.allclose(out, x.mean(1), atol=1e-5)
    out.pow(2).sum().backward()
    assert x.grad is not None
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("layout", ["items", "tokens"])
def test_loss_falls_and_overfits_a_handful_of_users(layout: str) -> None:
    """Six users who walk the catalog in order: after training, every next item is ranked first."""
    torch.manual_seed(0)
    built = tiny(layout, n_items=24)
    model, vocab = built.model, built.vocab
    seqs = [[(s + j) % 24 for j in range(8)] for s in (0, 4, 8, 12, 16, 20)]
    windows = [w for s in seqs for w in make_windows(s, vocab, stride=10)]
    batch = collate([w.prompt for w in windows], pad_id=vocab.pad_id, targets=[w.targets for w in windows])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        _, loss = model(batch)
        assert loss is not None
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    model.eval()
    with torch.inference_mode():
        hist = [s[:5] for s in seqs]
        h = model.user_embeddings(collate([build_prompt(x, vocab) for x in hist], pad_id=vocab.pad_id))
        top1 = (h @ model.item_embeddings().T).argmax(-1).tolist()
    assert top1 == [s[5] for s in seqs]
