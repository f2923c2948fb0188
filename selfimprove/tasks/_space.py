"""Search spaces over a task's architecture params (for ``tune`` and ``evolve``).

A space is a plain ``dict[str, Param]``; each param translates itself to an Optuna suggestion
(through a trial passed in, so this module does not import Optuna).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from selfimprove.errors import TaskError

__all__ = [
    "MLP_SPACE",
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "Param",
    "SearchSpace",
    "point_in",
]


class _Trial(Protocol):
    def suggest_int(self, name: str, low: int, high: int, *, log: bool = ...) -> int: ...

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = ...) -> float: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True)
class IntParam:
    """An integer in ``[low, high]`` (log-uniform if ``log``)."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        if self.low > self.high or (self.log and self.low < 1):
            raise TaskError(
                f"IntParam needs 1 <= low <= high for log, got {self.low}, {self.high}."
            )

    def suggest(self, trial: _Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and self.low <= value <= self.high
        )


@dataclass(frozen=True)
class FloatParam:
    """A float in ``[low, high]`` (log-uniform if ``log``)."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if self.low > self.high or (self.log and self.low <= 0):
            raise TaskError(
                f"FloatParam needs low <= high (> 0 for log), got {self.low}, {self.high}."
            )

    def suggest(self, trial: _Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def contains(self, value: Any) -> bool:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and self.low <= value <= self.high


@dataclass(frozen=True)
class CategoricalParam:
    """One of ``choices``."""

    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.choices:
            raise TaskError("CategoricalParam needs at least one choice.")

    def suggest(self, trial: _Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))

    def contains(self, value: Any) -> bool:
        return value in self.choices


Param = IntParam | FloatParam | CategoricalParam
SearchSpace = dict[str, Param]


#: The architecture space of the built-in MLPs (``build_mlp`` params).
def point_in(space: SearchSpace, values: Any) -> dict[str, Any] | None:
    """``values`` as a point of ``space`` (its keys only), or ``None`` when a key is missing or
    a value lies outside its param: what a search may try first (a warm start)."""
    if not isinstance(values, dict) or any(
        k not in values or not p.contains(values[k]) for k, p in space.items()
    ):
        return None
    return {k: values[k] for k in space}


MLP_SPACE: SearchSpace = {
    "width": IntParam(8, 512, log=True),
    "depth": IntParam(1, 4),
    "activation": CategoricalParam(("relu", "gelu", "tanh", "silu")),
    "dropout": FloatParam(0.0, 0.5),
}
