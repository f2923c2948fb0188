"""The one door to ``transformers``: quiet, lazy imports and offline-only loading.

``transformers`` is imported on first use, never when :mod:`selfimprove` is imported (it costs
seconds, and it pulls in ``torchao`` when that is installed, whose import logs notices about
optional kernels that say nothing about our use; they are held back to errors, as
:mod:`selfimprove.nn.quantize` does). Nothing here ever downloads: ``from_pretrained`` runs with
``local_files_only=True`` and a miss becomes one clear line that suggests ``tiny``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from selfimprove.errors import ConfigError

if TYPE_CHECKING:
    from transformers import GPT2Config, GPT2LMHeadModel

__all__ = [
    "gpt2_module",
    "is_gpt2",
    "llama_module",
    "new_config",
    "new_model",
    "no_progress_bars",
    "quiet",
    "transformers_module",
]

_NOISY = ("torch.utils._pytree", "torchao", "transformers")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Hold the loggers of ``transformers`` / ``torchao`` imports back to errors for a block."""
    loggers = [logging.getLogger(n) for n in _NOISY]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """Switch transformers' progress bars off for a block (the library never prints; the CLI
    draws progress)."""
    hf_logging = transformers_module("transformers.utils.logging")
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def transformers_module(name: str) -> ModuleType:
    """A ``transformers`` module, imported quietly; a clear error when it is not installed."""
    try:
        with quiet():
            return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(
            f"head plasticity needs transformers ({exc}); install it with "
            "pip install 'selfimprove[lm]'."
        ) from None


def gpt2_module() -> ModuleType:
    """``transformers.models.gpt2.modeling_gpt2`` (imported quietly on first use).

    Raises:
        ConfigError: ``transformers`` is not installed.
    """
    return transformers_module("transformers.models.gpt2.modeling_gpt2")


def llama_module() -> ModuleType:
    """``transformers.models.llama.modeling_llama`` (imported quietly on first use).

    Raises:
        ConfigError: ``transformers`` is not installed.
    """
    return transformers_module("transformers.models.llama.modeling_llama")


def is_gpt2(model: object) -> bool:
    """Whether ``model`` is a ``GPT2LMHeadModel`` (without importing transformers needlessly)."""
    cls_names = {c.__name__ for c in type(model).__mro__}
    return "GPT2LMHeadModel" in cls_names


def new_config(**kwargs: Any) -> GPT2Config:
    """A ``GPT2Config`` from keyword arguments (imported quietly)."""
    with quiet():
        cfg: GPT2Config = gpt2_module().GPT2Config(**kwargs)
    return cfg


def new_model(config: GPT2Config) -> GPT2LMHeadModel:
    """A freshly initialised ``GPT2LMHeadModel`` (draws from torch's global RNG: seed around it)."""
    with quiet():
        model: GPT2LMHeadModel = gpt2_module().GPT2LMHeadModel(config)
    return model
