"""`PatternLearner`: which sequences of approaches tend to succeed.

An experiment sequence is the ordered list of approaches tried on one problem (one weakness of
the engine, or one model of the neural system), each with its outcome. The learner counts, for
every run of up to ``max_order + 1`` consecutive approaches ``(a_1, …, a_k, b)``, how often the
last one, ``b``, succeeded when it came right after ``a_1 … a_k``. "After *caching* failed,
*query_optimization* succeeded 3 times in 4" is such a pattern.

Pattern names are stable across processes and machines: the SHA-256 of the sequence, never
Python's ``hash()`` of a string, which is salted per process (``PYTHONHASHSEED``), so the
same pattern would get a new name at every start and its counts could not be found again.

Prediction backs off from the longest context seen often enough to shorter ones, and smooths
rates with Laplace's rule ``(successes + 1) / (count + 2)`` so that one lucky success is not
read as certainty.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from selfimprove.errors import ConfigError

__all__ = ["PatternLearner", "Prediction", "SequencePattern", "Step", "pattern_id"]

_SEP = "\x1f"  # unit separator: cannot occur in an approach name typed by a person


def pattern_id(sequence: Sequence[str]) -> str:
    """A stable name for a sequence of approaches: ``seq-`` + 12 hex digits of its SHA-256."""
    digest = hashlib.sha256(_SEP.join(sequence).encode("utf-8")).hexdigest()
    return f"seq-{digest[:12]}"


@dataclass(frozen=True)
class Step:
    """One experiment in a sequence: the approach tried, whether it succeeded, by how much."""

    approach: str
    success: bool
    improvement: float = 0.0


@dataclass(frozen=True)
class SequencePattern:
    """How often the last approach of ``sequence`` succeeded right after the ones before it.

    Attributes:
        pattern_id: Stable name (see :func:`pattern_id`).
        sequence: The context approaches, then the approach whose outcomes are counted.
        count: Times the sequence occurred.
        successes: Times its last approach succeeded there.
        mean_improvement: Mean improvement of its last approach there (failures count as
            their measured value, 0 when none was measured).
    """

    pattern_id: str
    sequence: tuple[str, ...]
    count: int
    successes: int
    mean_improvement: float

    @property
    def success_rate(self) -> float:
        """``successes / count``."""
        return self.successes / self.count if self.count else 0.0

    @property
    def smoothed_rate(self) -> float:
        """Laplace-smoothed success rate ``(successes + 1) / (count + 2)``."""
        return (self.successes + 1) / (self.count + 2)

    @property
    def label(self) -> str:
        """The sequence as text: ``caching → query_optimization``."""
        return " → ".join(self.sequence)


@dataclass(frozen=True)
class Prediction:
    """A candidate next approach with its estimated success probability and where it came from.

    Attributes:
        approach: The candidate.
        probability: Laplace-smoothed success rate of the pattern used (0.5 with no data).
        pattern_id: The pattern it was read from (``None``: nothing seen yet).
        support: How many times that pattern occurred.
    """

    approach: str
    probability: float
    pattern_id: str | None
    support: int


class PatternLearner:
    """Counts sequence patterns of approaches and predicts which one to try next.

    Args:
        max_order: Longest context (approaches before the counted one) that is tracked.
        min_support: Occurrences a pattern needs before it is reported or used to predict.
    """

    def __init__(self, max_order: int = 2, min_support: int = 2) -> None:
        if max_order < 0:
            raise ConfigError(f"max_order must be >= 0, but got {max_order=}.")
        if min_support < 1:
            raise ConfigError(f"min_support must be >= 1, but got {min_support=}.")
        self.max_order = max_order
        self.min_support = min_support
        self.patterns_: dict[tuple[str, ...], SequencePattern] = {}

    def fit(self, sequences: Iterable[Sequence[Step]]) -> PatternLearner:
        """Count every pattern in ``sequences`` (replacing what was counted before).

        Args:
            sequences: Each one problem's experiments, in the order they ran.

        Returns:
            ``self``.
        """
        counts: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0, 0, 0.0])
        for seq in sequences:
            names = [s.approach for s in seq]
            for j, step in enumerate(seq):
                for k in range(min(self.max_order, j) + 1):
                    key = tuple(names[j - k : j + 1])
                    c = counts[key]
                    c[0] += 1
                    c[1] += 1 if step.success else 0
                    c[2] += step.improvement
        self.patterns_ = {
            key: SequencePattern(pattern_id(key), key, int(n), int(s), tot / n)
            for key, (n, s, tot) in counts.items()
        }
        return self

    def detect_sequence_pattern(
        self, sequences: Iterable[Sequence[Step]] | None = None
    ) -> list[SequencePattern]:
        """The sequence patterns (two or more approaches) seen at least ``min_support`` times.

        Args:
            sequences: When given, :meth:`fit` on them first.

        Returns:
            Patterns, most reliable first (smoothed rate, then support, then name).
        """
        if sequences is not None:
            self.fit(sequences)
        found = [
            p
            for p in self.patterns_.values()
            if len(p.sequence) > 1 and p.count >= self.min_support
        ]
        return sorted(found, key=lambda p: (-p.smoothed_rate, -p.count, p.label))

    def predict_next(self, history: Sequence[str], candidates: Sequence[str]) -> list[Prediction]:
        """Rank candidate next approaches after ``history``.

        For each candidate the longest context ``history[-k:]`` (``k <= max_order``) whose
        pattern with the candidate occurred at least ``min_support`` times gives the estimate;
        with none, the candidate's own record (any support) does; with nothing, 0.5.

        Args:
            history: Approaches already tried on this problem, in order.
            candidates: Approaches that could come next.

        Returns:
            One prediction per candidate, most promising first (ties keep the given order).
        """
        out = []
        for cand in candidates:
            chosen: SequencePattern | None = None
            for k in range(min(self.max_order, len(history)), -1, -1):
                key = (*history[len(history) - k :], cand) if k else (cand,)
                pat = self.patterns_.get(tuple(key))
                if pat is not None and (pat.count >= self.min_support or k == 0):
                    chosen = pat
                    break
            if chosen is None:
                out.append(Prediction(cand, 0.5, None, 0))
            else:
                out.append(Prediction(cand, chosen.smoothed_rate, chosen.pattern_id, chosen.count))
        order = {c: i for i, c in enumerate(candidates)}
        return sorted(out, key=lambda p: (-p.probability, order[p.approach]))
