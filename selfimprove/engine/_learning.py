"""Learning about learning: the engine's meta-learnings, its pattern learner and its changelog.

Meta-learnings go to the one ``meta_learnings`` table that the neural system's insights use
too (seed 002's type → ``kind``, pattern → ``subject``, insight → ``statement``, experiments →
``evidence``). Four kinds are derived from the engine's finished experiments after each one:

- ``experiment_effectiveness``, subject ``<weakness type>|<approach>``: successes out of runs
  and the mean measured improvement (failed runs count as 0); this mean is the expected
  improvement of the next experiment of that approach on that weakness type;
- ``approach_preference``, subject ``<weakness type>``: the approach with the best smoothed
  success rate ``(s + 1) / (n + 2)``, then the best mean improvement;
- ``failure_modes``, subject ``<approach>|<mode>``: how often that approach failed by an
  exception type, by not being significant, or by falling short of the threshold;
- ``improvement_patterns``, subject a stable pattern id: sequences of approaches (per weakness,
  and per model for the neural system's strategy runs) whose last step tends to succeed.

``confidence`` is the lower end of the 95 % Wilson interval of successes / count (one success
out of one gives 0.21: seen once, not yet believed). ``times_validated`` grows by one when the
outcomes added since the last update side with what the row said.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from selfimprove.engine._types import MetaLearningType
from selfimprove.errors import ConfigError
from selfimprove.meta.patterns import PatternLearner, Step
from selfimprove.store import (
    Decision,
    ExperimentRecord,
    ExperimentStatus,
    HistoryRecord,
    MetaLearningRecord,
    Store,
)

__all__ = ["FINISHED", "Learning", "outcome", "wilson_lower"]

FINISHED = (ExperimentStatus.COMPLETED, ExperimentStatus.FAILED)


def wilson_lower(successes: int, count: int) -> float:
    """Lower end of the 95 % Wilson interval of ``successes / count`` (0 with no trials)."""
    if count <= 0:
        return 0.0
    from scipy import stats

    return float(stats.binomtest(successes, count).proportion_ci(0.95, method="wilson").low)


def outcome(e: ExperimentRecord) -> tuple[bool, float]:
    """Whether ``e`` succeeded and its measured relative improvement (0 when it failed)."""
    rel = e.statistics.get("relative_improvement")
    gain = float(rel) if isinstance(rel, (int, float)) and math.isfinite(rel) else 0.0
    return (
        e.decision is Decision.PROMOTE,
        gain if e.status is ExperimentStatus.COMPLETED else 0.0,
    )


def _failure_mode(e: ExperimentRecord) -> str | None:
    """Why ``e`` did not succeed: its exception type, ``not_significant`` or
    ``below_threshold`` (``None`` when it succeeded)."""
    if e.status is ExperimentStatus.FAILED:
        return str(e.statistics.get("error_type") or e.reason.split(":", 1)[0] or "error")
    if e.decision is Decision.PROMOTE:
        return None
    if not e.statistics.get("significant", False):
        return "not_significant"
    return "below_threshold"


class Learning:
    """Meta-learnings, the pattern learner and the changelog (seed 002's learning layer).

    Args:
        store: The one store.
        pattern_learner: Fitted to the store's experiment sequences before each use.
    """

    def __init__(self, store: Store, pattern_learner: PatternLearner | None = None) -> None:
        self.store = store
        self.pattern_learner = pattern_learner if pattern_learner is not None else PatternLearner()

    def learn_from(self, exp: ExperimentRecord, wtype: str) -> None:
        """Update every derived meta-learning after ``exp`` finished."""
        self._learn_effectiveness(wtype, exp.strategy)
        self._learn_preference(wtype, exp)
        self._learn_failure_modes(exp)
        self.learn_patterns()

    def expected_improvement(self, weakness_type: str, approach: str) -> tuple[float, int] | None:
        """The mean measured improvement of ``approach`` on ``weakness_type`` and its count,
        or ``None`` when it was never measured."""
        learnt = self.store.find_meta_learning(
            MetaLearningType.EXPERIMENT_EFFECTIVENESS.value, f"{weakness_type}|{approach}"
        )
        mean = learnt.evidence.get("mean_improvement") if learnt else None
        if learnt is None or not isinstance(mean, (int, float)) or not math.isfinite(mean):
            return None
        return float(mean), learnt.count

    def _engine_experiments(self) -> list[ExperimentRecord]:
        return [e for e in self.store.list_experiments() if e.weakness_id is not None]

    def _save_learning(
        self,
        kind: MetaLearningType,
        subject: str,
        statement: str,
        count: int,
        successes: int,
        evidence: dict[str, Any],
        *,
        validated: bool | None = None,
    ) -> MetaLearningRecord:
        """Store a derived meta-learning; by default a validation is counted when the outcomes
        added since the last update side with what the row said (success rate ≥ 0.5 or not)."""
        prev = self.store.find_meta_learning(kind.value, subject)
        if (
            prev is not None
            and (prev.count, prev.successes, prev.statement) == (count, successes, statement)
            and not validated
        ):
            return prev  # nothing new was seen: leave the row (and its updated_at) alone
        if validated is None:
            validated = False
            if prev is not None and prev.count > 0 and count > prev.count:
                new_n, new_s = count - prev.count, successes - prev.successes
                if 0 <= new_s <= new_n:
                    validated = (new_s / new_n >= 0.5) == (prev.successes / prev.count >= 0.5)
        return self.store.record_meta_learning(
            kind.value,
            subject,
            statement=statement,
            count=count,
            successes=successes,
            confidence=wilson_lower(successes, count),
            evidence=evidence,
            validated=validated,
        )

    def _learn_effectiveness(self, wtype: str, approach: str) -> None:
        runs = [
            e
            for e in self._engine_experiments()
            if e.strategy == approach
            and e.params.get("weakness_type") == wtype
            and e.status in FINISHED
        ]
        if not runs:
            return
        outcomes = [outcome(e) for e in runs]
        n, s = len(runs), sum(ok for ok, _ in outcomes)
        mean = sum(g for _, g in outcomes) / n
        with_exp = [e for e in runs if e.expected_improvement is not None]
        beat = sum(
            1
            for e in with_exp
            if e.status is ExperimentStatus.COMPLETED
            and outcome(e)[1] >= float(e.expected_improvement or 0.0)
        )
        self._save_learning(
            MetaLearningType.EXPERIMENT_EFFECTIVENESS,
            f"{wtype}|{approach}",
            f"{approach} on {wtype} weaknesses: {s} of {n} experiments succeeded; mean measured "
            f"improvement {mean:+.1%} (failed runs count as 0); {beat} of {len(with_exp)} "
            "reached their expectation.",
            n,
            s,
            {
                "experiments": [e.id for e in runs],
                "mean_improvement": mean,
                "beat_expectation": beat,
                "with_expectation": len(with_exp),
            },
        )

    def _learn_preference(self, wtype: str, latest: ExperimentRecord) -> None:
        by_approach: dict[str, list[tuple[bool, float]]] = defaultdict(list)
        for e in self._engine_experiments():
            if e.params.get("weakness_type") == wtype and e.status in FINISHED:
                by_approach[e.strategy].append(outcome(e))
        if not by_approach:
            return

        def score(item: tuple[str, list[tuple[bool, float]]]) -> tuple[float, float, str]:
            name, outs = item
            n, s = len(outs), sum(ok for ok, _ in outs)
            return (-(s + 1) / (n + 2), -sum(g for _, g in outs) / n, name)

        ranked = sorted(by_approach.items(), key=score)
        best, outs = ranked[0]
        n_best, s_best = len(outs), sum(ok for ok, _ in outs)
        prev = self.store.find_meta_learning(MetaLearningType.APPROACH_PREFERENCE.value, wtype)
        latest_ok = latest.decision is Decision.PROMOTE
        agrees = (latest.strategy == best) == latest_ok
        validated = bool(prev is not None and prev.evidence.get("preferred") == best and agrees)
        others = ", ".join(f"{name} {sum(ok for ok, _ in o)}/{len(o)}" for name, o in ranked[1:])
        self._save_learning(
            MetaLearningType.APPROACH_PREFERENCE,
            wtype,
            f"for {wtype} weaknesses prefer {best} ({s_best}/{n_best} succeeded)"
            + (f" over {others}" if others else ""),
            n_best,
            s_best,
            {
                "preferred": best,
                "approaches": {
                    name: {"count": len(o), "successes": sum(ok for ok, _ in o)}
                    for name, o in ranked
                },
            },
            validated=validated,
        )

    def _learn_failure_modes(self, latest: ExperimentRecord) -> None:
        runs = [
            e
            for e in self._engine_experiments()
            if e.strategy == latest.strategy and e.status in FINISHED
        ]
        modes: dict[str, list[int]] = defaultdict(list)
        for e in runs:
            mode = _failure_mode(e)
            if mode is not None:
                modes[mode].append(e.id)
        for mode, ids in modes.items():
            prev = self.store.find_meta_learning(
                MetaLearningType.FAILURE_MODES.value, f"{latest.strategy}|{mode}"
            )
            self._save_learning(
                MetaLearningType.FAILURE_MODES,
                f"{latest.strategy}|{mode}",
                f"{latest.strategy}: {len(ids)} of {len(runs)} experiments failed by {mode}",
                len(runs),
                len(ids),
                {"experiments": ids},
                validated=prev is not None and len(ids) > prev.successes,
            )

    def _sequences(self) -> list[list[Step]]:
        """Experiment sequences: per weakness for the engine's, per model for the neural
        system's strategy runs, each in the order they finished."""
        groups: dict[tuple[str, int], list[ExperimentRecord]] = defaultdict(list)
        for e in self.store.list_experiments():
            if e.status not in FINISHED:
                continue
            if e.weakness_id is not None:
                groups[("weakness", e.weakness_id)].append(e)
            elif e.model_id is not None:
                groups[("model", e.model_id)].append(e)
        out = []
        for _, runs in sorted(groups.items()):
            runs.sort(key=lambda e: (e.finished_at or e.created_at, e.id))
            out.append([Step(e.strategy, *outcome(e)) for e in runs])
        return out

    def fit_patterns(self) -> None:
        """Fit the pattern learner to every experiment sequence in the store."""
        self.pattern_learner.fit(self._sequences())

    def learn_patterns(self) -> list[MetaLearningRecord]:
        """Run the pattern learner over every experiment sequence; store what recurs.

        Each sequence pattern seen at least ``min_support`` times becomes an
        ``improvement_patterns`` meta-learning named by its stable id.

        Returns:
            The stored pattern meta-learnings.
        """
        stored = []
        for p in self.pattern_learner.detect_sequence_pattern(self._sequences()):
            context = " → ".join(p.sequence[:-1])
            stored.append(
                self._save_learning(
                    MetaLearningType.IMPROVEMENT_PATTERNS,
                    p.pattern_id,
                    f"{p.label}: {p.sequence[-1]} succeeded {p.successes} of {p.count} times "
                    f"right after {context} (mean improvement {p.mean_improvement:+.1%})",
                    p.count,
                    p.successes,
                    {"sequence": list(p.sequence), "mean_improvement": p.mean_improvement},
                )
            )
        return stored

    def record_meta_learning(
        self,
        type: MetaLearningType | str,
        pattern: str,
        insight: str,
        confidence: float,
        experiments: Sequence[int] | None = None,
    ) -> MetaLearningRecord:
        """Record an observation about the improvement process (seed 002's signature).

        Stored in the shared ``meta_learnings`` table: ``type`` → kind, ``pattern`` → subject,
        ``insight`` → statement, ``experiments`` → evidence. Recording the same (type, pattern)
        again refreshes it and counts one more validation. ``count`` is the number of
        experiments given and ``successes`` how many of them succeeded (read from the store).

        Raises:
            ConfigError: Unknown type, confidence outside [0, 1], empty pattern or insight.
            NotFoundError: An experiment id that does not exist.
        """
        try:
            kind = MetaLearningType(type)
        except ValueError:
            raise ConfigError(
                f"meta-learning type must be one of {[t.value for t in MetaLearningType]}, "
                f"but got {type!r}."
            ) from None
        if not pattern or not insight:
            raise ConfigError("a meta-learning needs a non-empty pattern and insight.")
        if not 0 <= confidence <= 1:
            raise ConfigError(f"confidence must be in [0, 1], but got {confidence=}.")
        prev = self.store.find_meta_learning(kind.value, pattern)
        ids = sorted(
            {*(prev.evidence.get("experiments", []) if prev else []), *(experiments or [])}
        )
        exps = [self.store.get_experiment(i) for i in ids]
        return self.store.record_meta_learning(
            kind.value,
            pattern,
            statement=insight,
            count=len(exps),
            successes=sum(e.decision is Decision.PROMOTE for e in exps),
            confidence=confidence,
            evidence={"experiments": ids, "recorded_by": "hand"},
            validated=prev is not None,
        )

    def get_meta_learnings(
        self, min_confidence: float = 0.0, type: MetaLearningType | str | None = None
    ) -> list[MetaLearningRecord]:
        """Meta-learnings of every kind in the store (the engine's and the neural system's),
        at least ``min_confidence``, most confident first."""
        kind = MetaLearningType(type).value if type is not None else None
        rows = [m for m in self.store.list_meta_learnings(kind) if m.confidence >= min_confidence]
        return sorted(rows, key=lambda m: (-m.confidence, -m.times_validated, m.id))

    # ------------------------------------------------------------------ changelog
    def track_improvement_history(
        self,
        version: str,
        summary: str,
        improvements: Sequence[Any] | None = None,
        delta: float | None = None,
        changes: Sequence[Any] | None = None,
    ) -> HistoryRecord:
        """Add a version to the changelog.

        Args:
            version: The version's name (``"1.4.0"``).
            summary: What changed, in a sentence.
            improvements: Ids or descriptions of the improvements it contains.
            delta: The measured overall performance change (``None``: not measured).
            changes: Notable changes, one entry each.

        Raises:
            ConfigError: Empty version, or a non-finite delta.
        """
        if not version:
            raise ConfigError("a history entry needs a version, e.g. '1.4.0'.")
        if delta is not None and not math.isfinite(delta):
            raise ConfigError(f"delta must be a finite number or None, but got {delta!r}.")
        return self.store.add_history_entry(
            str(version),
            summary,
            improvements=list(improvements or []),
            performance_delta=delta,
            changes=list(changes or []),
        )

    def get_improvement_history(self, limit: int = 10) -> list[HistoryRecord]:
        """The newest ``limit`` changelog entries, newest first.

        Raises:
            ConfigError: ``limit < 1``.
        """
        if limit < 1:
            raise ConfigError(f"limit must be >= 1, but got {limit=}.")
        return self.store.list_history_entries(limit)
