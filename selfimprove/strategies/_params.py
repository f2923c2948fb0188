"""Strategy settings declared once: each strategy's table of :class:`Param` is both what it reads
and what a request is checked against before anything is recorded.

A setting arrives typed (Python, MCP's JSON) or as text (``selfimprove improve -p lr=0.01``);
:meth:`Param.parse` turns either into the declared type and checks its range, and
:func:`check_params` refuses an unknown key with the strategy's known keys in the message.
NaN and infinity are never a valid number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from selfimprove.errors import ConfigError
from selfimprove.measure.training import OPTIMIZERS, SCHEDULES

__all__ = ["TRAIN_PARAMS", "Param", "ParamTable", "check_params"]

#: What a setting holds: ``choices`` (several names of ``choices``) and ``json`` (a JSON object)
#: are the two compound kinds.
Kind = Literal["int", "float", "bool", "choice", "choices", "json"]

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NULL = ("none", "null")


class _Refused(Exception):
    """A value that does not parse (caught by :meth:`Param.parse`, which names the setting)."""


@dataclass(frozen=True)
class Param:
    """One setting of a strategy: its kind, its range and an example.

    Attributes:
        kind: ``int``, ``float``, ``bool``, ``choice`` (one of ``choices``), ``choices`` (one or
            more distinct names of ``choices``: a list, or text ``a,b``) or ``json`` (an object
            of JSON values: a dict, or its JSON text).
        low: Smallest allowed number (``None``: no bound); excluded when ``low_open``.
        high: Largest allowed number (``None``: no bound); excluded when ``high_open``.
        low_open: ``low`` itself is refused.
        high_open: ``high`` itself is refused.
        choices: The names a ``choice`` or ``choices`` setting may take.
        nullable: ``None`` (text ``none`` or ``null``) is allowed and means "off".
        epochs_cap: The value may not exceed the experiment's epoch budget.
        example: A valid ``key=value`` and what it does, for the error message.
    """

    kind: Kind
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False
    epochs_cap: bool = False
    example: str = ""

    def describe(self, max_epochs: int | None = None) -> str:
        """What a valid value is, in words (``"a number in (0, 1)"``)."""
        if self.kind == "bool":
            text = "true or false"
        elif self.kind == "choice":
            text = f"one of {', '.join(self.choices)}"
        elif self.kind == "choices":
            text = f"one or more distinct names from {', '.join(self.choices)}, comma-separated"
        elif self.kind == "json":
            text = 'a JSON object (e.g. {"width": 32})'
        else:
            noun = "an integer" if self.kind == "int" else "a finite number"
            text = noun + self._range(max_epochs)
        return text + (" or none" if self.nullable else "")

    def _bounds(self, max_epochs: int | None) -> tuple[float | None, float | None]:
        high = self.high
        if self.epochs_cap and max_epochs is not None:
            high = max_epochs if high is None else min(high, max_epochs)
        return self.low, high

    def _range(self, max_epochs: int | None) -> str:
        low, high = self._bounds(max_epochs)
        cap = " (at most the budget's epochs)" if self.epochs_cap and max_epochs else ""
        if low is not None and high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f" in {left}{_num(low)}, {_num(high)}{right}{cap}"
        if low is not None:
            return f" {'>' if self.low_open else '>='} {_num(low)}"
        if high is not None:
            return f" {'<' if self.high_open else '<='} {_num(high)}{cap}"
        return ""

    def parse(self, strategy: str, key: str, raw: Any, max_epochs: int | None = None) -> Any:
        """``raw`` (typed, or text from a command line) as this setting's type, range-checked.

        Args:
            strategy: The strategy's name, for the message.
            key: The setting's name, for the message.
            raw: The value given.
            max_epochs: The experiment's epoch budget (bounds an ``epochs_cap`` setting).

        Raises:
            ConfigError: The value is not of the kind or outside the range; the message names
                the setting, the value, what is valid and an example.
        """
        try:
            if self.nullable and (raw is None or _text(raw) in _NULL):
                return None
            value = _PARSERS[self.kind](self, raw)
            if isinstance(value, (int, float)):  # the kinds "int" and "float"
                self._check_range(value, max_epochs)
            return value
        except _Refused:
            example = f"; e.g. {self.example}" if self.example else ""
            raise ConfigError(
                f"{strategy} setting {key}={_shown(raw)} is not {self.describe(max_epochs)}"
                f"{example}."
            ) from None

    def _check_range(self, value: float, max_epochs: int | None) -> None:
        low, high = self._bounds(max_epochs)
        if low is not None and (value < low or (self.low_open and value == low)):
            raise _Refused
        if high is not None and (value > high or (self.high_open and value == high)):
            raise _Refused


#: A strategy's settings: name -> declaration.
ParamTable = Mapping[str, Param]


def check_params(
    strategy: str,
    table: ParamTable,
    params: Mapping[str, Any] | None,
    max_epochs: int | None = None,
) -> dict[str, Any]:
    """Every setting of ``params`` parsed and checked against ``table``.

    Args:
        strategy: The strategy's name, for messages.
        table: Its declared settings.
        params: The settings given (typed, or text from a command line).
        max_epochs: The experiment's epoch budget, when known.

    Returns:
        The given settings as their declared types (settings not given stay absent, so each
        strategy keeps its own defaults).

    Raises:
        ConfigError: ``params`` is not a mapping of names, holds a key the strategy does not
            know (the message lists the ones it does), or a value that is not valid.
    """
    if params is None:
        return {}
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise ConfigError(
            f"{strategy} settings must be a mapping of names to values, but got {_shown(params)}."
        )
    unknown = sorted(set(params) - set(table))
    if unknown:
        known = ", ".join(sorted(table)) or "none"
        raise ConfigError(
            f"{strategy} does not understand the settings {[_cut(k) for k in unknown[:5]]}; "
            f"its settings are: {known}."
        )
    return {k: table[k].parse(strategy, k, v, max_epochs) for k, v in params.items()}


# ---------------------------------------------------------------------- parsers
def _text(raw: Any) -> str | None:
    return raw.strip().lower() if isinstance(raw, str) else None


def _cut(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (a message stays one readable line)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(raw: Any) -> str:
    """``repr`` of a value, cut to 80 characters."""
    return _cut(repr(raw))


def _num(x: float) -> str:
    """A bound as written: ``100000``, ``0.5``, ``1e+06`` only past an integer's reach."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _int(_p: Param, raw: Any) -> int:
    if isinstance(raw, bool):
        raise _Refused
    if isinstance(raw, (int, np.integer)):
        return int(raw)
    value = _float(_p, raw)
    if not value.is_integer():
        raise _Refused
    return int(value)


def _float(_p: Param, raw: Any) -> float:
    if isinstance(raw, bool):
        raise _Refused
    if not isinstance(raw, (int, float, str, np.integer, np.floating)):
        raise _Refused
    try:
        value = float(raw.strip() if isinstance(raw, str) else raw)
    except (ValueError, OverflowError):  # not a number; an integer past a float's range
        raise _Refused from None
    if not math.isfinite(value):
        raise _Refused
    return value


def _bool(_p: Param, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = _text(raw)
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Refused


def _choice(p: Param, raw: Any) -> str:
    if not isinstance(raw, str) or raw.strip() not in p.choices:
        raise _Refused
    return raw.strip()


def _choices(p: Param, raw: Any) -> tuple[str, ...]:
    items = raw
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except ValueError:
                raise _Refused from None
        else:
            items = [t for t in text.split(",") if t.strip()]
    if not isinstance(items, (list, tuple)) or not items:
        raise _Refused
    names = tuple(_choice(p, item) for item in items)
    if len(set(names)) != len(names):
        raise _Refused
    return names


def _json(_p: Param, raw: Any) -> dict[str, Any]:
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            raise _Refused from None
    if not isinstance(value, Mapping) or not _json_safe(value):
        raise _Refused
    return dict(value)


def _json_safe(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is plain JSON with finite numbers (it is stored with the experiment)."""
    if depth > 16:
        return False
    if value is None or isinstance(value, (bool, str, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_json_safe(v, depth + 1) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _json_safe(v, depth + 1) for k, v in value.items())
    return False


_PARSERS: dict[str, Callable[[Param, Any], Any]] = {
    "int": _int,
    "float": _float,
    "bool": _bool,
    "choice": _choice,
    "choices": _choices,
    "json": _json,
}


#: The :class:`~selfimprove.measure.training.TrainConfig` fields a strategy may override
#: (:data:`~selfimprove.measure.training.TRAIN_OVERRIDES`), declared.
TRAIN_PARAMS: dict[str, Param] = {
    # No upper bound: a huge rate is a valid (if diverging) experiment, judged as failed.
    "lr": Param("float", 0.0, low_open=True, example="lr=0.001"),
    "weight_decay": Param("float", 0.0, 10.0, example="weight_decay=0.0001"),
    "batch_size": Param("int", 1, 1_000_000, example="batch_size=64"),
    "optimizer": Param("choice", choices=OPTIMIZERS, example="optimizer=adamw"),
    "schedule": Param("choice", choices=SCHEDULES, example="schedule=cosine"),
    "patience": Param("int", 0, 100_000, example="patience=5 (0: never stop early)"),
    "clip_norm": Param(
        "float", 0.0, 1e6, low_open=True, nullable=True, example="clip_norm=1.0 (none: no clip)"
    ),
}
