"""Which torch device runs a model: the user's ``device`` setting resolved once, and the models
that can only run on the CPU.

``"auto"`` means CUDA when this process can see a CUDA device, else the CPU; ``"cpu"``,
``"cuda"`` and ``"cuda:N"`` are taken as written, and an absent device is refused with one line
that says what to use instead. Checkpoints never carry a device: weights are moved to the CPU
before they are written and loaded on the CPU, then moved where they run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from selfimprove.config import check_device_name
from selfimprove.errors import ConfigError
from selfimprove.nn.quantize import is_quantized

__all__ = [
    "CPU",
    "check_device_name",
    "cpu_only",
    "module_device",
    "placed_on",
    "resolve_device",
    "synchronize",
]

#: The CPU device.
CPU = torch.device("cpu")


def resolve_device(name: str) -> torch.device:
    """The torch device called ``name`` (``"auto"``: CUDA when available, else the CPU).

    Raises:
        ConfigError: An unknown name, or a CUDA device this process cannot see.
    """
    check_device_name(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} is not available here (this torch sees no CUDA device); "
                "use --device cpu (or device='cpu'), or auto to use CUDA only where it exists."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r} is not available here: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s), numbered from 0."
            )
        if device.index is None:  # name the index, as the tensors placed there will
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter or buffer (the CPU for a module with none)."""
    for param in module.parameters():
        return param.device
    for buffer in module.buffers():
        return buffer.device
    return CPU


def cpu_only(module: nn.Module) -> bool:
    """Whether ``module`` runs on the CPU only: int8-quantized layers (``torch.ao``'s packed
    weights are not tensors ``.to()`` moves, and both engines' kernels are CPU kernels here)."""
    return is_quantized(module)


@contextlib.contextmanager
def placed_on(module: nn.Module, device: torch.device) -> Iterator[torch.device]:
    """Run a block with ``module`` on ``device``, then move it back where it was (in place).

    Yields ``device``. On the device it already is on, nothing moves.
    """
    before = module_device(module)
    if before == device:
        yield device
        return
    module.to(device)
    try:
        yield device
    finally:
        module.to(before)


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA runs asynchronously; the CPU does not)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
