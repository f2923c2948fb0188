"""The attention-head toolkit for GPT-2 and Llama transformers (transformers 5 removed
``head_mask`` and ``prune_heads``, so gates and surgery are written here).

- :mod:`.family`: which architectures are handled and how (one name -> class table; a Llama
  "head" is a key/value group);
- :mod:`.gates`: per-head gates (a pre-hook on the attention's output projection), head counts
  per layer;
- :mod:`.surgery`: structural removal and growth that return new models, uneven heads per
  layer (:func:`build_model` from a spec);
- :mod:`.growth`: where new heads go; :mod:`.importance`: gradient (Michel et al. 2019),
  entropy, activation, magnitude and random estimators, iterative pruning;
- :mod:`.measure`: token NLL, perplexity, single-thread latency, parameter count;
- :mod:`.checkpoint`: a model folder as safetensors + manifest (sha256 checked);
- :mod:`.pretrained`: ``save_pretrained`` folders plain transformers loads (uneven layers
  padded with inert heads) and the padding removed again on load;
- :mod:`.hf`: the one place that imports ``transformers`` (on first use).
"""

from __future__ import annotations

from selfimprove.nn.transformer.checkpoint import (
    FORMAT,
    SavedModel,
    load_model,
    read_manifest,
    save_model,
)
from selfimprove.nn.transformer.family import (
    FAMILIES,
    AttentionFamily,
    family_named,
    family_of,
    family_of_config,
)
from selfimprove.nn.transformer.gates import (
    HeadGates,
    attention_blocks,
    head_dim,
    heads_per_layer,
    total_heads,
)
from selfimprove.nn.transformer.growth import (
    GROWTH_STRATEGIES,
    plan_growth,
)
from selfimprove.nn.transformer.hf import (
    gpt2_module,
    is_gpt2,
    llama_module,
    new_config,
    new_model,
    quiet,
)
from selfimprove.nn.transformer.importance import (
    ESTIMATORS,
    PruneStep,
    head_importance,
    normalise_per_layer,
    prune_iteratively,
    select_heads,
)
from selfimprove.nn.transformer.measure import (
    count_parameters,
    mean_nll,
    measure_latency,
    perplexity,
    sequence_nll,
    token_nll,
)
from selfimprove.nn.transformer.pretrained import (
    PADDING_KEY,
    load_pretrained,
    load_pretrained_tokenizer,
    save_pretrained,
    strip_padding,
)
from selfimprove.nn.transformer.surgery import (
    build_gpt2,
    build_model,
    grow_heads,
    grown_head_masks,
    model_spec,
    prune_heads,
)

__all__ = [
    "ESTIMATORS",
    "FAMILIES",
    "FORMAT",
    "GROWTH_STRATEGIES",
    "PADDING_KEY",
    "AttentionFamily",
    "HeadGates",
    "PruneStep",
    "SavedModel",
    "attention_blocks",
    "build_gpt2",
    "build_model",
    "count_parameters",
    "family_named",
    "family_of",
    "family_of_config",
    "gpt2_module",
    "grow_heads",
    "grown_head_masks",
    "head_dim",
    "head_importance",
    "heads_per_layer",
    "is_gpt2",
    "llama_module",
    "load_model",
    "load_pretrained",
    "load_pretrained_tokenizer",
    "mean_nll",
    "measure_latency",
    "model_spec",
    "new_config",
    "new_model",
    "normalise_per_layer",
    "perplexity",
    "plan_growth",
    "prune_heads",
    "prune_iteratively",
    "quiet",
    "read_manifest",
    "save_model",
    "save_pretrained",
    "select_heads",
    "sequence_nll",
    "strip_padding",
    "token_nll",
    "total_heads",
]
