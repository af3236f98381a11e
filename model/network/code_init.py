"""Code-token rows started from the item quantizer's codebooks (``ModelConfig.code_init="codebook"``).

An item's embedding is the mean of its code rows, so whatever the rows encode at the start is what an
item added after training inherits. At random (the paper's start, the default) the rows encode nothing
about the text the codes came from. Here the row of code c at RQ-VAE level l starts as a fixed projection
of that level's codebook vector C_l[c]: the mean of an item's rows starts as a projection of its quantised
text embedding (the residual quantiser's reconstruction, divided by L), so items with similar text start
close and stay comparable while training moves the rows. The uniqueness level's rows start at zero: they
separate items that share every semantic code and carry no text.

``code_init="codebook-frozen"`` also keeps the semantic levels' rows where they start (their gradient is
zeroed; only the uniqueness rows train): every item, trained or added later, then lives in the same
fixed projection of the text space, and the decoder learns to map histories into it.

Example (D=4, one level, code_dim 2): P is a (4, 2) matrix with orthonormal columns, row(c) = s * P @ C_0[c],
with s scaling the rows to the backbone's own embedding norm.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.errors import SimGRError
from model.network.assembly import Assembled
from model.semantic_ids.space import code_token


def quantizer_codebooks(data_dir: Path) -> list[np.ndarray]:
    """Per RQ-VAE level, the (K_l, code_dim) codebook of the dataset's saved item quantizer."""
    from model.semantic_ids.quantizer import ItemQuantizer, find_quantizer

    folder = find_quantizer(data_dir)
    if folder is None:
        raise SimGRError(f"{data_dir}: code_init 'codebook' needs the item quantizer that `simgr semantic-ids` "
                         "saves when it makes IDs from text; this dataset's IDs were given")
    return [cb.detach().float().numpy() for cb in ItemQuantizer.load(folder).rqvae.codebooks]


@torch.no_grad()
def init_code_rows(built: Assembled, codebooks: Sequence[np.ndarray], *, levels: int, seed: int,
                   frozen: bool = False) -> None:
    """Overwrite the code-token rows of ``built`` (``levels`` = L, the uniqueness level last) in place;
    ``frozen``: and zero the gradient of the semantic levels' rows from now on."""
    weight: torch.Tensor = built.model.input_embeddings().weight  # type: ignore[assignment]  # (V, D)
    tokenizer: Any = built.tokenizer
    dim, code_dim = int(weight.shape[1]), int(codebooks[0].shape[1])
    gen = torch.Generator().manual_seed(seed)
    proj = torch.randn(dim, max(dim, code_dim), generator=gen)
    proj = torch.linalg.qr(proj)[0][:, :code_dim] if dim >= code_dim else proj[:, :code_dim] / dim ** 0.5
    rows, ids = [], []
    for lvl, cb in enumerate(codebooks):
        ids += tokenizer.convert_tokens_to_ids([code_token(lvl, c) for c in range(len(cb))])
        rows.append(torch.from_numpy(cb) @ proj.T)  # (K_l, D)
    new = torch.cat(rows)  # (sum K_l, D)
    scale = weight.norm(dim=1).median() / new.norm(dim=1).median().clamp_min(1e-12)
    known = torch.tensor([i is not None and i >= 0 for i in ids])
    rows_set = torch.tensor([i for i in ids if i is not None and i >= 0])
    weight[rows_set] = (new[known] * scale).to(weight.dtype)
    if frozen:
        keep = torch.ones(weight.shape[0], 1, dtype=weight.dtype)
        keep[rows_set] = 0.0
        weight.register_hook(lambda grad: grad * keep.to(grad.device, grad.dtype))
    if levels > len(codebooks):  # the uniqueness level: no text, start at zero
        prefix = code_token(levels - 1, 0).split("_")[0] + "_"  # every code of that level, e.g. "<d_"
        weight[torch.tensor([i for t, i in tokenizer.get_vocab().items() if t.startswith(prefix)])] = 0.0
