"""Mixed precision for training steps: bf16 autocast where the hardware runs it faster than fp32."""

from __future__ import annotations

import torch

from model.config import Autocast


def uses_bf16(mode: Autocast, device_type: str) -> bool:
    """TrainConfig.autocast on a device. auto: bf16 on CUDA, fp32 elsewhere. bf16: bf16 on any device; on
    a CPU this pays only with AMX or AVX512-BF16 units, where matrix products run several times faster.
    off: fp32 everywhere."""
    return mode == "bf16" or (mode == "auto" and device_type == "cuda")


def step_autocast(mode: Autocast, device: torch.device) -> torch.autocast:
    """The autocast context of one training step. Parameters, gradients and the optimiser state stay fp32
    in every mode; only the ops autocast lists run in bf16, and the loss's softmax reductions stay fp32
    (model/network/model.py)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(mode, device.type))
