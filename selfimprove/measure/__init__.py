"""Measuring models: the one training loop, the evaluator, the judge and the one statistics module.

- :mod:`.training`: ``train_`` (seeded; early stopping on a holdout carved from *train*);
- :mod:`.finetune`: causal-LM fine-tuning with per-head learning rates (plasticity, ``heads``);
- :mod:`.evaluation`: per-example scores, interleaved single-thread latency, size;
- :mod:`.judge`: promote or reject a candidate on validation (paired test + threshold + guards);
- :mod:`.stats`: the statistics both the judge and the engine use.
"""

from __future__ import annotations

from selfimprove.measure.evaluation import (
    Evaluation,
    Evaluator,
    LatencyProfile,
    SplitScores,
)
from selfimprove.measure.finetune import (
    FINETUNE_LR,
    FinetuneConfig,
    FinetuneResult,
    finetune_,
    new_head_masks,
)
from selfimprove.measure.judge import (
    DETERMINISTIC,
    EFFICIENCY,
    Judge,
    Judgement,
)
from selfimprove.measure.stats import (
    TESTS,
    Change,
    Comparison,
    as_direction,
    compare_samples,
    confidence_level,
    describe_change,
    paired_test,
)
from selfimprove.measure.training import (
    TrainConfig,
    TrainResult,
    train_,
)

__all__ = [
    "DETERMINISTIC",
    "EFFICIENCY",
    "FINETUNE_LR",
    "TESTS",
    "Change",
    "Comparison",
    "Evaluation",
    "Evaluator",
    "FinetuneConfig",
    "FinetuneResult",
    "Judge",
    "Judgement",
    "LatencyProfile",
    "SplitScores",
    "TrainConfig",
    "TrainResult",
    "as_direction",
    "compare_samples",
    "confidence_level",
    "describe_change",
    "finetune_",
    "new_head_masks",
    "paired_test",
    "train_",
]
