"""The CUDA paths: a bundle loads in bf16 on the GPU and scores like the float32 CPU copy; the FAISS index
is cloned to the GPU and answers like the CPU one, including past GPU_MAX_K (the exact fallback). Skipped
without CUDA (and, for the index, without faiss GPU support); meant for a GPU machine: pytest -m gpu."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from index import ItemIndex, exact_topk
from index.item_index import GPU_MAX_K

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
needs_faiss_gpu = pytest.mark.skipif(
    not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0, reason="faiss without GPU support"
)


def test_bundle_loads_in_bf16_on_cuda_and_scores_like_cpu(tiny_bundle_dir: Path) -> None:
    from model.export.bundle import Bundle

    cpu, gpu = Bundle.load(tiny_bundle_dir, device="cpu"), Bundle.load(tiny_bundle_dir, device="cuda")
    params = list(gpu.model.parameters())
    assert {p.dtype for p in params} == {torch.bfloat16}
    assert {p.device.type for p in params} == {"cuda"}
    hist = [[1, 2, 3], list(range(40)), [7]]
    q_cpu, q_gpu = cpu.encode_users(hist), gpu.encode_users(hist)  # (B, D) numpy float32 both
    assert q_gpu.dtype == np.float32
    assert q_gpu.shape == q_cpu.shape
    cos = (q_cpu * q_gpu).sum(1) / (np.linalg.norm(q_cpu, axis=1) * np.linalg.norm(q_gpu, axis=1))
    assert (cos > 0.99).all(), cos  # bf16 weights: close to, not equal to, the float32 embedding
    top_cpu = exact_topk(q_cpu, cpu.embeddings, 10)[1]
    top_gpu = exact_topk(q_gpu, gpu.embeddings, 10)[1]
    overlap = [len(set(a) & set(b)) for a, b in zip(top_cpu.tolist(), top_gpu.tolist(), strict=True)]
    assert min(overlap) >= 8, overlap


@needs_faiss_gpu
def test_gpu_index_clone_answers_like_cpu(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((3000, 64)).astype(np.float32)
    q = rng.standard_normal((5, 64)).astype(np.float32)
    ItemIndex.build(emb).save(tmp_path / "index.faiss")
    cpu, gpu = ItemIndex.load(tmp_path / "index.faiss"), ItemIndex.load(tmp_path / "index.faiss", use_gpu=True)
    assert gpu.on_gpu
    assert not cpu.on_gpu
    exclude = [set(range(50)), set(), {1, 2}, set(range(0, 3000, 7)), set()]
    allow = [None, set(range(100, 200)), None, None, set()]
    s_cpu, i_cpu = cpu.search(q, 20, exclude=exclude, allow=allow)
    s_gpu, i_gpu = gpu.search(q, 20, exclude=exclude, allow=allow)
    np.testing.assert_allclose(s_gpu, s_cpu, rtol=1e-4, atol=1e-4)
    assert ((i_gpu == i_cpu) | np.isclose(s_gpu, s_cpu, atol=1e-4)).all()
    assert (i_gpu[4] == -1).all()  # an empty allow-list allows nothing, on GPU too (faiss#3924)
    gpu.save(tmp_path / "back.faiss")  # copied back to CPU to write
    np.testing.assert_array_equal(ItemIndex.load(tmp_path / "back.faiss").search(q, 20)[1], cpu.search(q, 20)[1])


@needs_faiss_gpu
def test_past_gpu_max_k_the_gpu_index_scores_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = GPU_MAX_K + 1000
    emb = rng.standard_normal((n, 32)).astype(np.float32)
    q = rng.standard_normal((3, 32)).astype(np.float32)
    ItemIndex.build(emb).save(tmp_path / "index.faiss")
    gpu = ItemIndex.load(tmp_path / "index.faiss", use_gpu=True)
    assert gpu.on_gpu
    big_k = GPU_MAX_K + 10  # more than faiss GPU can select
    s, i = gpu.search(q, big_k)
    ref_s, ref_i = exact_topk(q, emb, big_k)
    np.testing.assert_allclose(s, ref_s, rtol=1e-5, atol=1e-5)
    assert ((i == ref_i) | np.isclose(s, ref_s, atol=1e-5)).all()
    excluded = set(range(GPU_MAX_K))  # k + |exclude| past the limit: the exact path, still exactly k
    s, i = gpu.search(q, 10, exclude=[excluded] * 3)
    assert not set(i.ravel().tolist()) & excluded
    assert (i >= GPU_MAX_K).all()
    ref_s, _ = exact_topk(q, emb[GPU_MAX_K:], 10)
    np.testing.assert_allclose(s, ref_s, rtol=1e-5, atol=1e-5)
