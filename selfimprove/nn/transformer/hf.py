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
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from selfimprove.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from transformers import GPT2Config, GPT2LMHeadModel

__all__ = [
    "gpt2_module",
    "is_gpt2",
    "llama_module",
    "load_pretrained",
    "load_pretrained_tokenizer",
    "new_config",
    "new_model",
    "no_progress_bars",
    "quiet",
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
    hf_logging = _transformers_module("transformers.utils.logging")
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _transformers_module(name: str) -> ModuleType:
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
    return _transformers_module("transformers.models.gpt2.modeling_gpt2")


def llama_module() -> ModuleType:
    """``transformers.models.llama.modeling_llama`` (imported quietly on first use).

    Raises:
        ConfigError: ``transformers`` is not installed.
    """
    return _transformers_module("transformers.models.llama.modeling_llama")


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


def load_pretrained(name: str, *, families: Sequence[str] = ("gpt2",)) -> GPT2LMHeadModel:
    """A model from a local folder or the local Hugging Face cache, never the network.

    A folder written by :func:`~selfimprove.nn.transformer.save_pretrained` comes back with its
    padding heads removed (:func:`~selfimprove.nn.transformer.strip_padding`), so its layers
    hold their true, uneven head counts again.

    Args:
        name: A hub name (``distilgpt2``) already in the local cache, or a folder written by
            ``save_pretrained``.
        families: The families accepted (see :mod:`.family`; the default is GPT-2 alone, what
            the plasticity workbench measures today; ``("gpt2", "llama")`` takes both).

    Returns:
        The model, in eval mode.

    Raises:
        NotFoundError: The weights are not available offline, or the model is not of an
            accepted family.
    """
    # Imported here: the families and surgery import this module.
    from selfimprove.nn.transformer.family import family_named, family_of_config
    from selfimprove.nn.transformer.pretrained import strip_padding

    accepted = [family_named(f) for f in families]
    kinds = " or ".join(f.name for f in accepted)
    transformers = _transformers_module("transformers")
    try:
        with quiet(), no_progress_bars():
            config = transformers.AutoConfig.from_pretrained(name, local_files_only=True)
            try:
                family = family_of_config(config)
            except ConfigError:
                family = None
            if family is None or family not in accepted:
                raise NotFoundError(
                    f"{name!r} holds a {getattr(config, 'model_type', '?')!r} model, not "
                    f"{kinds}; use --model_name tiny, or a {kinds} folder."
                )
            model: GPT2LMHeadModel = family.model_class().from_pretrained(  # type: ignore[attr-defined]
                name, local_files_only=True
            )
    except (OSError, ValueError) as exc:
        if Path(name).exists():
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            raise NotFoundError(
                f"folder {name!r} does not hold a {kinds} model saved with save_pretrained "
                f"({first or type(exc).__name__}); use --model_name tiny."
            ) from None
        raise NotFoundError(
            f"model {name!r} is not available offline (its weights are not in the local Hugging "
            "Face cache, and nothing is downloaded here); use --model_name tiny, or a folder "
            "saved with save_pretrained."
        ) from None
    model = strip_padding(model)
    model.eval()
    return model


def load_pretrained_tokenizer(name: str) -> Any:
    """The tokenizer saved beside a pretrained model, offline only.

    Raises:
        NotFoundError: No tokenizer is available offline.
    """
    try:
        with quiet():
            auto = importlib.import_module("transformers").AutoTokenizer
            tokenizer = auto.from_pretrained(name, local_files_only=True)
        if not tokenizer.encode("Hello world"):  # built from a config alone, with no vocabulary
            raise ValueError("it has no vocabulary files")
        return tokenizer
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotFoundError(
            f"the tokenizer of {name!r} is not available offline ({first[:160]}); "
            "use --model_name tiny (byte-level, needs no tokenizer files)."
        ) from None
