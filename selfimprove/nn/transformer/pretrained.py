"""Pruned and grown models as ``save_pretrained`` folders that plain transformers loads.

transformers 5 has no per-layer head counts for GPT-2 or Llama (``pruned_heads`` is gone from
``PreTrainedConfig``; ``GPT2Config`` has one ``n_head``, ``LlamaConfig`` one
``num_attention_heads`` / ``num_key_value_heads``, and both attention classes build every layer
from those alone). So :func:`save_pretrained` writes an equivalent **padded** model: every layer
is filled up to one head count with inert heads (all their weights zero, so their output, and
the output projection's slice that reads it, are zero) and the config describes that count:

- GPT-2 derives ``head_dim = n_embd // n_head``, so the count is always the config's ``n_head``:
  a pruned GPT-2 reloads with its original number of heads, half of them doing nothing, and
  a layer grown beyond ``n_head`` cannot be saved this way at all;
- Llama has an explicit ``head_dim``, so the count is the largest layer's (``num_key_value_heads``
  groups, ``num_attention_heads = groups * r``), raised to the next count whose query heads
  divide ``hidden_size`` (``LlamaConfig.validate_architecture`` requires it): a model pruned
  evenly to such a count is saved exactly, smaller.

transformers 5.25 also has a generic ``per_layer_config`` on ``PreTrainedConfig``, but
``GPT2LMHeadModel`` and ``LlamaForCausalLM`` never read it (a config that sets ``n_head`` or
``num_key_value_heads`` per layer makes both fail with ``AmbiguousGlobalPerLayerAttributeError``
when the model is built), so it cannot carry uneven heads for these families.

Plain ``AutoModelForCausalLM.from_pretrained`` then computes the same logits (the padding adds
exact zeros). The true counts are written to the config as ``selfimprove_heads_per_layer`` (an
extra key transformers keeps and ignores); :func:`strip_padding`, which
:func:`~selfimprove.nn.transformer.load_pretrained` applies, removes the padding again so the
model comes back with its uneven, smaller layers.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from selfimprove.errors import ConfigError, NotFoundError
from selfimprove.nn.transformer.family import family_named, family_of, family_of_config
from selfimprove.nn.transformer.hf import no_progress_bars, quiet, transformers_module
from selfimprove.nn.transformer.surgery import prune_heads

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

__all__ = [
    "PADDING_KEY",
    "load_pretrained",
    "load_pretrained_tokenizer",
    "save_pretrained",
    "strip_padding",
]

logger = logging.getLogger(__name__)

#: Config key holding the true heads (units) per layer of a padded folder.
PADDING_KEY = "selfimprove_heads_per_layer"


def save_pretrained(
    model: GPT2LMHeadModel, folder: str | os.PathLike[str], *, tokenizer: Any | None = None
) -> Path:
    """Write ``model`` as a ``save_pretrained`` folder that plain transformers loads with the same
    logits (uneven layers padded with inert heads; see the module notes).

    Args:
        model: A GPT-2 or Llama model, uneven heads allowed (left alone).
        folder: Where to write (created; existing files of the same names are replaced).
        tokenizer: A transformers tokenizer to save beside it (anything with
            ``save_pretrained``), or ``None``.

    Returns:
        The folder.

    Raises:
        ConfigError: The family's config cannot hold the model's largest layer (a GPT-2 layer
            grown beyond ``n_head``).
    """
    family = family_of(model)
    attns = family.attention_modules(model)
    counts = [family.units(a) for a in attns]
    d, r = family.head_dim(attns[0]), family.heads_per_unit(attns[0])
    target = family.export_units(model.config, counts)
    padded = copy.deepcopy(model)
    for attn, count in zip(family.attention_modules(padded), counts, strict=True):
        if count < target:
            family.append_units_(attn, target - count, None)  # zero weights: inert
    family.set_config_units_(padded.config, target, d, r)
    setattr(padded.config, PADDING_KEY, counts)
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    with quiet(), no_progress_bars():
        padded.save_pretrained(path)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
    return path


def _is_zero(t: torch.Tensor) -> bool:
    return not bool(t.detach().any())


def strip_padding(model: GPT2LMHeadModel) -> GPT2LMHeadModel:
    """``model`` without the inert heads :func:`save_pretrained` padded it with: a new model
    with the uneven layers recorded in its config, or ``model`` itself when it records none.

    Padding that is no longer inert (the folder was trained further by other code) is kept, with
    a warning, so the function is never changed.

    Raises:
        ConfigError: The recorded counts do not fit the model.
    """
    counts = getattr(model.config, PADDING_KEY, None)
    if counts is None:
        return model
    family = family_of(model)
    attns = family.attention_modules(model)
    if not isinstance(counts, list) or len(counts) != len(attns):
        raise ConfigError(
            f"config key {PADDING_KEY} must list one head count per layer ({len(attns)}), "
            f"but holds {counts!r}."
        )
    remove: dict[int, list[int]] = {}
    for layer, (attn, count) in enumerate(zip(attns, counts, strict=True)):
        units = family.units(attn)
        if not isinstance(count, int) or not 1 <= count <= units:
            raise ConfigError(
                f"config key {PADDING_KEY} gives layer {layer} {count!r} heads; it holds {units}."
            )
        pad = list(range(count, units))
        if not pad:
            continue
        masks = family.unit_masks(attn, pad)
        if all(_is_zero(p * m) for p, m in masks.items()):
            remove[layer] = pad
        else:
            logger.warning(
                "layer %d: the %d padding heads are no longer zero; they are kept", layer, len(pad)
            )
    stripped = prune_heads(model, remove) if remove else copy.deepcopy(model)
    delattr(stripped.config, PADDING_KEY)
    return stripped


def load_pretrained(name: str, *, families: Sequence[str] = ("gpt2",)) -> GPT2LMHeadModel:
    """A model from a local folder or the local Hugging Face cache, never the network.

    A folder written by :func:`save_pretrained` comes back with its
    padding heads removed (:func:`strip_padding`), so its layers
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
    accepted = [family_named(f) for f in families]
    kinds = " or ".join(f.name for f in accepted)
    transformers = transformers_module("transformers")
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
