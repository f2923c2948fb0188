"""The gain-prediction model: a network that learns, from the ledger, what an experiment will gain.

It is itself a registered model, improved by the same loop as every other one ("networks
improving networks"): :func:`register_gain_model` turns the experiment history into a
:class:`GainPredictionTask` and registers a first, deliberately weak model ``gain_predictor``;
``improver.run(models=["gain_predictor"])`` then trains and judges it like any model (and the
system's planner may tune or evolve it: its task offers :data:`MLP_SPACE`).

**Rows.** One row per *finished* model experiment (status ``completed`` or ``failed``; ``stale``
ones were cut short by a crash and say nothing about the strategy), oldest first (by id, which
is creation order).

**Target.** ``y`` = the realised gain: the judge's ``relative_improvement`` of the targeted
objective (relative reduction of its error-like form, validation split) when the candidate was
promoted, else 0 (rejected or failed). This is exactly the gain the system's ``_learn`` feeds to
the bandit, before it divides by the experiment's cost (:func:`reward_cost`: epochs spent, per
``REWARD_EPOCHS``, floored at ``MIN_REWARD_EPOCHS``). We predict *gain*, not gain per cost: the
gain is a property of (strategy, model, weakness), while what a strategy spends depends on its
settings. The budget is a feature, so a planner divides the predicted gain by the cost it expects.
Costs are counted in epochs, never in seconds: seconds follow the machine's load, so the same
seed would plan differently on a busy machine.

**Features** (``FEATURE_NAMES``, 24 columns; every transform is fixed, never fitted on data, so a
checkpoint keeps its meaning when the task is rebuilt from a longer history, in any process):

- ``strategy=<name>``: one-hot over ``FEATURE_STRATEGIES``, the 8 strategies of encoding
  version 1 (a strategy outside it, such as ``grow``, gives all zeros).
- ``kind=<kind>``: one-hot over :data:`selfimprove.brain.planning.KINDS` (4 columns). The kind the
  system planned, read from ``cycle_metrics.extra.tasks`` (matched on cycle, model name and
  strategy); experiments run outside a system cycle (``improve``, ``run``) have no recorded kind
  and take their strategy's family, which is the kind a user's task gets for that strategy.
- ``family_bucket=<i>``: the model's task family hashed into ``FAMILY_BUCKETS`` = 8 buckets,
  ``derive_seed("family", family) % 8`` (stable across processes; unrelated families may share
  a bucket, which only blurs the feature, never breaks the encoding).
- ``log10_parameters``: ``log10(max(P, 1)) / 6`` with ``P`` the incumbent's parameter count from
  its version's metrics (``metrics["parameters"]``); versions without it use
  ``size_bytes / 4`` (float32 weights), and no incumbent at all gives 0. A 1M-parameter model
  reads 1.0.
- ``log1p_gap``: ``log(1 + min(gap, 100))`` with ``gap`` the incumbent's direction-aware relative
  shortfall from the capability's target on the targeted objective, as
  :meth:`selfimprove.objectives.Objective.gap` defines it: ``max(0, target - before) / |target|``
  for a maximized objective, ``max(0, before - target) / |target|`` for a minimized one (0 when
  met; 100 when the target is 0 and missed). ``before`` is the judge's ``statistics["before"]``;
  a failed experiment has none, so the incumbent version's recorded ``validation_<objective>``
  (or ``<objective>``) metric is used.
- ``gap_known``: 1 when both ``before`` and the target were found, else 0 (and the gap reads 0).
- ``log10_epochs``: ``log10(1 + epochs) / 2`` with ``epochs`` the budget's epochs
  (``params["budget"]["epochs"]``); 100 epochs read about 1.0.
- ``model_level_objective``: 1 when the targeted objective is a property of the model itself
  (``latency_ms``, ``size_bytes``, ``parameters``: optimisation targets, where the data
  objective becomes a guard), 0 for a data objective (accuracy, mse).

**Task.** :class:`GainPredictionTask` splits the rows in *time order*: the oldest 60 % train,
the next 20 % validation (the judge decides on it), the newest 20 % test (only reported), so no
model ever learns from an experiment newer than one it is judged on. Primary objective ``mse``;
its target is half the validation error of the better constant guess,
``0.5 × min(mean((y_val − mean(y_train))²), mean(y_val²))`` floored at 1e-6: the model must do
twice as well as "the usual gain" or "no gain". The target only tells the loop when to stop
spending effort on the gain model (``run`` skips a model at target); the judge alone promotes.

**Predictions** are the network's output clipped to [0, 1], the range of a realised gain.

**Against the bandit.** :func:`compare_with_bandit` measures, on experiments newer than any the
predictor could have learnt from or been selected on (the task's test split, and everything
finished since the snapshot), the mean absolute error of the predicted gain and of the bandit's
estimate in the same unit: the bandit's posterior mean reward (gain per cost unit) for the
experiment's (kind, family) context and strategy — its prior mean if that arm was never tried
there — times the experiment's own :func:`reward_cost`: the very denominator the system used
to turn that gain into a reward, so the conversion is exact and, since it uses the realised
cost, generous to the bandit. The bandit is replayed from the same older experiments (with
the given bandit's prior), because the live bandit has already been fed the held-out outcomes.
The gain model decides only when its error is strictly smaller (and, when ``alpha`` is given,
when the judge's one-sided paired bootstrap over the per-experiment absolute errors agrees at
``alpha``: a difference of a thousandth on nine experiments should not hand over the planning).
"""

from __future__ import annotations

from selfimprove.meta.gain.advisor import GainAdvisor
from selfimprove.meta.gain.features import (
    FAMILY_BUCKETS,
    FEATURE_NAMES,
    FEATURE_STRATEGIES,
    FEATURE_VERSION,
    GAIN_MODEL_NAME,
    GAIN_TASK_NAME,
    MIN_EXPERIMENTS,
    MIN_REWARD_EPOCHS,
    MODEL_OBJECTIVES,
    REWARD_EPOCHS,
    ExperimentFacts,
    FeatureEncoding,
    encode_features,
    experiment_facts,
    experiment_features,
    family_bucket,
    realised_gain,
    reward_cost,
    time_split_sizes,
)
from selfimprove.meta.gain.predictor import GainPredictor, compare_with_bandit
from selfimprove.meta.gain.task import GainPredictionTask, register_gain_model

__all__ = [
    "FAMILY_BUCKETS",
    "FEATURE_NAMES",
    "FEATURE_STRATEGIES",
    "FEATURE_VERSION",
    "GAIN_MODEL_NAME",
    "GAIN_TASK_NAME",
    "MIN_EXPERIMENTS",
    "MIN_REWARD_EPOCHS",
    "MODEL_OBJECTIVES",
    "REWARD_EPOCHS",
    "ExperimentFacts",
    "FeatureEncoding",
    "GainAdvisor",
    "GainPredictionTask",
    "GainPredictor",
    "compare_with_bandit",
    "encode_features",
    "experiment_facts",
    "experiment_features",
    "family_bucket",
    "realised_gain",
    "register_gain_model",
    "reward_cost",
    "time_split_sizes",
]
