"""Adaptive neural plasticity (seed 004): prune -> measure -> grow -> learn on GPT-2 models.

Head gating, importance, surgery and growth are written here by hand: transformers 5 removed
GPT-2's ``head_mask`` and ``prune_heads``. Start with :class:`AdaptivePlasticitySystem`: its
cycle is a chain of step functions (``_cycle``), judged by
:func:`selfimprove.measure.lm_judge.judge_cycle`, and every cycle is an experiment (every kept
one a version) in the one :class:`~selfimprove.store.Store`. The pieces are usable alone:

- :class:`HeadGates` (per-head gates), :func:`prune_heads` / :func:`grow_heads` (structural
  surgery that returns new models), :func:`build_gpt2` (uneven heads from a spec);
- :func:`head_importance` (gradient, entropy, activation, magnitude, random),
  :func:`prune_iteratively`, :func:`plan_growth`;
- :func:`finetune_` (differential learning rates), :func:`degeneration_score`,
  :func:`perplexity`, :func:`measure_latency`;
- :func:`load_corpus` (built-in ``pydoc`` text, a local file, an offline HF dataset),
  :func:`load_tiny` (a small byte-level GPT-2 pre-trained on the corpus's training split,
  cached once per machine in :func:`tiny_cache_dir`);
- :func:`build_dashboard` (self-contained HTML), :class:`LanguageModelTask` (the ``Task`` the
  main loop's ``heads`` strategy works on).

``transformers`` is imported on first use only.
"""

from __future__ import annotations

from selfimprove.measure.finetune import (
    FINETUNE_LR,
    FinetuneConfig,
    FinetuneResult,
    finetune_,
)
from selfimprove.nn.transformer.checkpoint import SavedModel, load_model, save_model
from selfimprove.nn.transformer.gates import HeadGates, head_dim, heads_per_layer, total_heads
from selfimprove.nn.transformer.growth import GROWTH_STRATEGIES, plan_growth
from selfimprove.nn.transformer.importance import (
    ESTIMATORS,
    head_importance,
    prune_iteratively,
    select_heads,
)
from selfimprove.nn.transformer.measure import (
    count_parameters,
    mean_nll,
    measure_latency,
    perplexity,
    sequence_nll,
)
from selfimprove.nn.transformer.surgery import build_gpt2, grow_heads, model_spec, prune_heads
from selfimprove.plasticity._acceptance import judge_candidate
from selfimprove.plasticity._adaptation import (
    StrategyRatings,
    Transformation,
    TransformationMemory,
    adapt_growth,
    adapt_levels,
    cycle_reward,
)
from selfimprove.plasticity._config import (
    CycleOutcome,
    PlasticityConfig,
    PlasticityResults,
    load_results,
)
from selfimprove.plasticity._dashboard import DASHBOARD_FILE, build_dashboard
from selfimprove.plasticity._degeneration import (
    DEGENERATE,
    HEALTHY,
    DegenerationConfig,
    DegenerationReport,
    degeneration_score,
    generate,
    text_statistics,
)
from selfimprove.plasticity._metrics import METRICS_FILE, read_metrics
from selfimprove.plasticity._reference import ReferenceTrack
from selfimprove.plasticity._search import RemovalSearch, next_removal, update_search
from selfimprove.plasticity._system import AdaptivePlasticitySystem
from selfimprove.plasticity._tiny import load_tiny, tiny_cache_dir
from selfimprove.tasks.corpus import (
    BUILTIN_DATASET,
    ByteTokenizer,
    Corpus,
    HFTokenizer,
    TokenData,
    Tokenizer,
    load_corpus,
    tokenize_corpus,
)
from selfimprove.tasks.language import (
    TINY_NAME,
    CausalLM,
    LanguageModelTask,
    TinySpec,
    pydoc_lm_task,
)

__all__ = [
    "BUILTIN_DATASET",
    "DASHBOARD_FILE",
    "DEGENERATE",
    "ESTIMATORS",
    "FINETUNE_LR",
    "GROWTH_STRATEGIES",
    "HEALTHY",
    "METRICS_FILE",
    "TINY_NAME",
    "AdaptivePlasticitySystem",
    "ByteTokenizer",
    "CausalLM",
    "Corpus",
    "CycleOutcome",
    "DegenerationConfig",
    "DegenerationReport",
    "FinetuneConfig",
    "FinetuneResult",
    "HFTokenizer",
    "HeadGates",
    "LanguageModelTask",
    "PlasticityConfig",
    "PlasticityResults",
    "ReferenceTrack",
    "RemovalSearch",
    "SavedModel",
    "StrategyRatings",
    "TinySpec",
    "TokenData",
    "Tokenizer",
    "Transformation",
    "TransformationMemory",
    "adapt_growth",
    "adapt_levels",
    "build_dashboard",
    "build_gpt2",
    "count_parameters",
    "cycle_reward",
    "degeneration_score",
    "finetune_",
    "generate",
    "grow_heads",
    "head_dim",
    "head_importance",
    "heads_per_layer",
    "judge_candidate",
    "load_corpus",
    "load_model",
    "load_results",
    "load_tiny",
    "mean_nll",
    "measure_latency",
    "model_spec",
    "next_removal",
    "perplexity",
    "plan_growth",
    "prune_heads",
    "prune_iteratively",
    "pydoc_lm_task",
    "read_metrics",
    "save_model",
    "select_heads",
    "sequence_nll",
    "text_statistics",
    "tiny_cache_dir",
    "tokenize_corpus",
    "total_heads",
    "update_search",
]
