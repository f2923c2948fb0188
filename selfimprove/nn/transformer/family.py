"""Which transformer families the head toolkit knows, found through one name -> class table.

Gates, importance, surgery, growth and ``save_pretrained`` ask :func:`family_of` for the
:class:`AttentionFamily` of a model and go through it, so each architecture's layout lives in
one private module (:mod:`._gpt2`, :mod:`._llama`) and the algorithms are written once.

=========  ======================  ====================================================
family     transformers class      unit ("head" in this API)
=========  ======================  ====================================================
``gpt2``   ``GPT2LMHeadModel``     one attention head
``llama``  ``LlamaForCausalLM``    one key/value group (``r`` query heads, 1 k, 1 v head)
=========  ======================  ====================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from selfimprove.errors import ConfigError
from selfimprove.nn.transformer._family_base import AttentionFamily
from selfimprove.nn.transformer._gpt2 import GPT2Family
from selfimprove.nn.transformer._llama import LlamaFamily

__all__ = ["FAMILIES", "AttentionFamily", "family_named", "family_of", "family_of_config"]

#: Family name -> implementation (stateless instances).
FAMILIES: Mapping[str, AttentionFamily] = {f.name: f for f in (GPT2Family(), LlamaFamily())}


def family_named(name: str) -> AttentionFamily:
    """The family called ``name``.

    Raises:
        ConfigError: Unknown name.
    """
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown transformer family {name!r}; use one of {sorted(FAMILIES)}."
        ) from None


def family_of(model: object) -> AttentionFamily:
    """The family of ``model`` (matched on its class and base classes, without importing
    transformers).

    Raises:
        ConfigError: No family handles ``model``'s class.
    """
    names = {c.__name__ for c in type(model).__mro__}
    for family in FAMILIES.values():
        if names.intersection(family.model_classes):
            return family
    known = ", ".join(c for f in FAMILIES.values() for c in f.model_classes)
    raise ConfigError(f"head plasticity works on {known} models, not {type(model).__name__}.")


def family_of_config(config: Mapping[str, Any] | Any) -> AttentionFamily:
    """The family of a config (object or ``to_dict()`` form) by its ``model_type``.

    Raises:
        ConfigError: Unknown or missing ``model_type``.
    """
    model_type = (
        config.get("model_type")
        if isinstance(config, Mapping)
        else getattr(config, "model_type", None)
    )
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    known = sorted(t for f in FAMILIES.values() for t in f.model_types)
    raise ConfigError(f"head plasticity works on model types {known}, not {model_type!r}.")
