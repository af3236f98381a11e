"""Mixed precision for training steps: bf16 autocast where the hardware runs it faster than fp32.

On a CPU, bf16 matrix products are fast only with AMX tiles or AVX512-BF16 instructions. Without them
oneDNN emulates bf16 and a step runs many times slower than in fp32: on a 2-core AMD EPYC with AVX2 only,
`benchmarks/mixed_precision.py` measured a `large` bf16 step at 0.04x the samples/s of fp32
(reports/quality, section 2d). ``precision_advice`` says so in the training log.
"""

from __future__ import annotations

import logging

import torch

from model.config import Autocast


def uses_bf16(mode: Autocast, device_type: str) -> bool:
    """TrainConfig.autocast on a device. auto: bf16 on CUDA, fp32 elsewhere. bf16: bf16 on any device; on
    a CPU this pays only with AMX or AVX512-BF16 units, where matrix products run several times faster.
    off: fp32 everywhere."""
    return mode == "bf16" or (mode == "auto" and device_type == "cuda")


def cpu_bf16_units() -> tuple[str, ...]:
    """This CPU's units that run bf16 matrix products in hardware, of ("AMX", "AVX512-BF16")."""
    found = (("AMX", torch.cpu._is_amx_tile_supported()), ("AVX512-BF16", torch.cpu._is_avx512_bf16_supported()))
    return tuple(name for name, present in found if present)


def cpu_has_bf16_units() -> bool:
    """Whether this CPU runs bf16 matrix products in hardware: AMX tiles or AVX512-BF16."""
    return bool(cpu_bf16_units())


def precision_advice(mode: Autocast, device_type: str, *, bf16_units: bool | None = None) -> tuple[int, str]:
    """(logging level, line) on the precision of the training steps: a warning for bf16 on a CPU without
    bf16 units, where fp32 (``--autocast off``) is faster. ``bf16_units`` defaults to this CPU's."""
    if not uses_bf16(mode, device_type):
        return logging.INFO, "precision: fp32"
    if device_type != "cpu" or (cpu_has_bf16_units() if bf16_units is None else bf16_units):
        return logging.INFO, "precision: bf16 autocast"
    return logging.WARNING, ("precision: bf16 autocast on a CPU without AMX or AVX512-BF16, where bf16 is "
                             "emulated and a step runs many times slower than in fp32: train with "
                             "--autocast off here (model/training/precision.py)")


def step_autocast(mode: Autocast, device: torch.device) -> torch.autocast:
    """The autocast context of one training step. Parameters, gradients and the optimiser state stay fp32
    in every mode; only the ops autocast lists run in bf16, and the loss's softmax reductions stay fp32
    (model/network/model.py)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(mode, device.type))
