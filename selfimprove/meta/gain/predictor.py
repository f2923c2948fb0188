"""The gain model as a predictor, and its honest comparison with the bandit."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from selfimprove.errors import ConfigError, TaskError
from selfimprove.measure.stats import paired_test
from selfimprove.meta.bandit import StrategyBandit
from selfimprove.meta.gain.features import (
    GAIN_MODEL_NAME,
    ExperimentFacts,
    FeatureEncoding,
    encode_facts,
    experiment_facts,
    reward_cost,
)
from selfimprove.meta.gain.task import GainPredictionTask
from selfimprove.objectives import Direction, Objective
from selfimprove.registry import Registry
from selfimprove.seeding import derive_seed
from selfimprove.store import (
    Store,
)

logger = logging.getLogger(__name__)


class GainPredictor:
    """A trained gain model and its feature encoding.

    Args:
        module: A module mapping ``(B, encoding.width)`` inputs to ``(B, 1)`` gains.
        encoding: The feature encoding the module was trained on.
        fit_through_id: Newest experiment id the module may have learnt from or been selected
            on (held-out evaluation starts after it).
    """

    def __init__(
        self, module: nn.Module, encoding: FeatureEncoding, *, fit_through_id: int
    ) -> None:
        self.module = module
        self.encoding = encoding
        self.fit_through_id = fit_through_id

    @classmethod
    def from_registry(
        cls, registry: Registry, name: str = GAIN_MODEL_NAME, version: int | None = None
    ) -> GainPredictor:
        """Load a version of the registered gain model (the incumbent by default).

        Args:
            registry: The registry holding the model (``improver.registry``).
            name: Model name.
            version: Version number (``None``: the incumbent).

        Returns:
            The predictor.

        Raises:
            TaskError: The model's task is not a :class:`GainPredictionTask` (call
                :func:`register_gain_model` in this process first).
        """
        loaded = registry.load(name, version)
        task = loaded.task
        if not isinstance(task, GainPredictionTask):
            raise TaskError(
                f"model {name!r} has task {loaded.model.task!r}, which is not a gain-prediction "
                "task in this process; call register_gain_model(improver, store, seed=...) first."
            )
        return cls(loaded.module, task.encoding, fit_through_id=task.fit_through_id)

    def predict_many(self, features: np.ndarray) -> np.ndarray:
        """Predicted gains of a batch of rows.

        Args:
            features: ``(n, encoding.width)`` rows from :func:`encode_features`.

        Returns:
            ``(n,)`` float64 predicted gains, clipped to [0, 1] (the range of a realised gain).

        Raises:
            ConfigError: Rows of the wrong width.
        """
        x = np.asarray(features, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.encoding.width:
            raise ConfigError(
                f"gain features must have {self.encoding.width} columns (FEATURE_NAMES), but got "
                f"shape {tuple(x.shape)}; build rows with encode_features."
            )
        self.module.eval()
        with torch.no_grad():
            out = self.module(torch.from_numpy(x))  # (n, F) -> (n, 1)
        # A realised gain lies in [0, 1] by construction (0 unless promoted; a relative error
        # reduction cannot exceed 1), so a prediction outside it is clipped.
        return out.reshape(-1).double().clamp(0.0, 1.0).numpy()

    def predict(self, features: Sequence[float] | np.ndarray) -> float:
        """The predicted gain of one experiment.

        Args:
            features: One row from :func:`encode_features`.

        Returns:
            The predicted realised gain.
        """
        return float(self.predict_many(np.asarray(features, dtype=np.float32))[0])


# ---------------------------------------------------------------------- versus the bandit
def _reward_cost(facts: ExperimentFacts) -> float:
    return reward_cost(facts.epochs_spent)


def _replayed_bandit(bandit: StrategyBandit, seen: Sequence[ExperimentFacts]) -> StrategyBandit:
    """A bandit with ``bandit``'s prior and seed, fed only the experiments in ``seen``."""
    replay = StrategyBandit(
        bandit.seed,
        prior_mean=bandit.prior_mean,
        prior_scale=bandit.prior_scale,
        prior_strength=bandit.prior_strength,
    )
    for f in seen:
        replay.update((str(f.kind), f.family), f.strategy, f.gain / _reward_cost(f))
    return replay


def _bandit_gain(replay: StrategyBandit, f: ExperimentFacts) -> float:
    """The bandit's estimate of an experiment's gain: its mean reward times the cost."""
    mean = replay.estimates((str(f.kind), f.family)).get(f.strategy, {})
    return float(mean.get("mean", replay.prior_mean)) * _reward_cost(f)


def who_decides(
    mae_model: float, mae_bandit: float, p: float, *, n: int, alpha: float | None
) -> tuple[str, str]:
    """Who sets planned priorities, and why (pure).

    Returns:
        ``("gain_model", reason)`` when the gain model's held-out MAE is strictly smaller (and
        significantly so, ``p < alpha``, when ``alpha`` is given), else ``("bandit", reason)``.
    """
    better = mae_model < mae_bandit
    decides = "gain_model" if better and (alpha is None or p < alpha) else "bandit"
    relation = "<" if better else ("=" if mae_model == mae_bandit else ">")
    shown = (
        f"on {n} held-out experiments the gain model's MAE {mae_model:.4g} {relation} "
        f"the bandit's {mae_bandit:.4g} (paired bootstrap p={p:.3g})"
    )
    if decides == "gain_model":
        return decides, f"{shown}: the gain model is strictly better"
    if not better:
        return decides, (
            f"{shown}: the gain model is not strictly better, so the bandit keeps deciding"
        )
    return decides, (
        f"{shown}: better, but not significantly at α={alpha}, so the bandit keeps deciding"
    )


def compare_with_bandit(
    store: Store,
    predictor: GainPredictor,
    bandit: StrategyBandit,
    *,
    alpha: float | None = None,
    facts: Sequence[ExperimentFacts] | None = None,
) -> dict[str, Any]:
    """Held-out error of the gain model against the bandit's, in the unit of gain.

    Held out: every finished experiment newer than ``predictor.fit_through_id``. The bandit is
    replayed, with ``bandit``'s prior, on the experiments up to that id (context = (kind, model
    family), reward = gain / reward_cost(epochs spent), as the system feeds it); its estimate of
    a held-out experiment is its posterior mean reward for that (context, strategy) — the prior
    mean when never tried — times the experiment's reward_cost.

    ``p_value`` is the judge's one-sided paired bootstrap
    (:func:`selfimprove.measure.stats.paired_test`) that the gain model's absolute errors are
    smaller than the bandit's on the same experiments.

    Args:
        store: The ledger.
        predictor: The gain model.
        bandit: Supplies the prior (mean, scale, strength) and seed of the replayed bandit.
        alpha: When given, the gain model must also be significantly better (``p_value <
            alpha``) to decide; ``None`` (default): a strictly smaller MAE suffices.
        facts: ``experiment_facts(store)`` when already computed (default: read now).

    Returns:
        ``n``, ``gain_model_mae``, ``bandit_mae`` (NaN when ``n`` is 0), ``p_value``
        (``None`` when ``n`` is 0), ``decides`` (``"gain_model"`` only when its MAE is strictly
        smaller, and significantly so when ``alpha`` is given; else ``"bandit"``), ``reason``,
        ``gain_model_wins`` (held-out experiments where its error is smaller),
        ``held_out_ids``, ``bandit_trained_on`` and ``conversion``.

    Raises:
        ConfigError: ``alpha`` outside (0, 1).
    """
    if alpha is not None and not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1) or None, but got {alpha=}.")
    facts = experiment_facts(store) if facts is None else facts
    seen = [f for f in facts if f.id <= predictor.fit_through_id]
    held = [f for f in facts if f.id > predictor.fit_through_id]
    replay = _replayed_bandit(bandit, seen)
    result: dict[str, Any] = {
        "n": len(held),
        "held_out_ids": [f.id for f in held],
        "bandit_trained_on": len(seen),
        "conversion": "bandit gain = posterior mean reward x reward_cost(epochs spent)",
    }
    if not held:
        result.update(
            gain_model_mae=math.nan,
            bandit_mae=math.nan,
            p_value=None,
            gain_model_wins=0,
            decides="bandit",
            reason=(
                f"no finished experiment is newer than #{predictor.fit_through_id}: nothing "
                "held out to compare on, so the bandit keeps deciding"
            ),
        )
        return result
    truth = np.array([f.gain for f in held])
    predicted = predictor.predict_many(np.stack([encode_facts(f) for f in held]))
    bandit_gain = np.array([_bandit_gain(replay, f) for f in held])
    err_model, err_bandit = np.abs(predicted - truth), np.abs(bandit_gain - truth)
    mae_model, mae_bandit = float(err_model.mean()), float(err_bandit.mean())
    error = Objective("absolute_error", Direction.MINIMIZE)
    _, p = paired_test(error, err_bandit, err_model, seed=derive_seed("gain_vs_bandit"))
    decides, reason = who_decides(mae_model, mae_bandit, p, n=len(held), alpha=alpha)
    result.update(
        gain_model_mae=mae_model,
        bandit_mae=mae_bandit,
        p_value=p,
        gain_model_wins=int((err_model < err_bandit).sum()),
        decides=decides,
        reason=reason,
    )
    logger.info("gain model vs bandit: %s", reason)
    return result
