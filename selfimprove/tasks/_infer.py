"""Search spaces inferred for MLP-shaped models whose task gives none.

A user's own task often has no ``search_space()``: its builder reads a few numeric params (the
README's ``{"width": 8}``, or :func:`~selfimprove.tasks.build_mlp`'s ``width`` / ``depth``) and
nothing says how far they may move. :func:`infer_search_space` proposes a space around the
incumbent's params and keeps only what it has *seen* work: every param's low and high ends are
built (``task.build``) and run on a few training inputs, and must give the incumbent's output
shape, finite outputs and a different model (a builder that ignores a param gives nothing to
search). :func:`effective_search_space` is what the strategies ask: the task's own space when
it has one (unchanged), else the inferred one, with where it came from.

Pure and deterministic: builds run under a fixed seed with torch's global RNG forked, so
nothing here draws from or disturbs the caller's randomness.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from selfimprove.nn.mlp import ACTIVATIONS
from selfimprove.nn.modules import arch_params
from selfimprove.seeding import torch_seeded
from selfimprove.tasks._base import Task
from selfimprove.tasks._space import CategoricalParam, FloatParam, IntParam, Param, SearchSpace

__all__ = [
    "MAX_INFERRED_WIDTH",
    "SPACE_FROM_TASK",
    "effective_search_space",
    "infer_search_space",
]

logger = logging.getLogger(__name__)

#: The widest hidden layer an inferred space proposes (unless the incumbent is wider already).
MAX_INFERRED_WIDTH = 1024

#: :func:`effective_search_space`'s source when the task gives its own space.
SPACE_FROM_TASK = "task"

#: Layers an MLP-shaped model may hold weights in (weight-free layers are all allowed).
_MLP_LAYERS = (nn.Linear, nn.LayerNorm, nn.BatchNorm1d)
_PROBE_SEED = 0  # shapes do not depend on it; fixed so that probing never touches global RNG
_PROBE_EXAMPLES = 4
_DEPTH_HINTS = ("depth", "layers", "n_layer", "num_layer", "blocks")
_WIDTH_HINTS = ("width", "hidden", "units", "neurons", "dim", "size")
_NOT_WIDTH = ("batch", "kernel", "vocab", "seq", "context", "input", "output", "class")

_Signature = tuple[str, ...]


def effective_search_space(task: Task, params: Mapping[str, Any]) -> tuple[SearchSpace | None, str]:
    """The space ``evolve`` searches for a model of ``task`` with architecture ``params``.

    Args:
        task: The model's task.
        params: The incumbent's params (transform keys are ignored).

    Returns:
        ``(space, source)``: the task's own space and :data:`SPACE_FROM_TASK` when it gives
        one; else the inferred space and ``"inferred: <what and why>"``; else ``None`` and
        ``"none: <why not>"``.
    """
    own = task.search_space()
    if own is not None:
        return own, SPACE_FROM_TASK
    space, reason = infer_search_space(task, params)
    return space, f"{'inferred' if space is not None else 'none'}: {reason}"


def infer_search_space(task: Task, params: Mapping[str, Any]) -> tuple[SearchSpace | None, str]:
    """A search space around ``params`` for an MLP-shaped model whose task gives none.

    Width-like integers (``width``, ``hidden_size``, ...) range log-uniformly from a quarter to
    16 times the incumbent's (at most :data:`MAX_INFERRED_WIDTH`); depth-like integers
    (``depth``, ``n_layers``, ...) from 1 to ``max(depth, 4)``; a ``dropout`` float from 0 to
    0.5; an ``activation`` among :data:`~selfimprove.nn.mlp.ACTIVATIONS`. Each is kept only
    when both its ends build a module that runs on a few training inputs, gives the
    incumbent's output shape and differs from the incumbent's; an end that fails is pulled
    toward the incumbent's value until it works (a builder that breaks for large widths
    caps the range). Other params (lists, flags, input or output sizes) are left as they are.

    Args:
        task: The model's task.
        params: The incumbent's architecture params (transform keys are ignored).

    Returns:
        ``(space, reason)``: the space and what was inferred, skipped and capped; or ``None``
        and why nothing could be (the task gives its own space, the model is not MLP-shaped,
        no param changes the model, ...).
    """
    if task.search_space() is not None:
        return None, f"task {task.name!r} gives its own search space"
    base = arch_params(params)
    try:
        x = task.splits().train.x[:_PROBE_EXAMPLES]
    except Exception as exc:  # a task's own splits() may fail in any way
        return None, f"no training inputs to probe with ({type(exc).__name__}: {exc})"
    incumbent, failure = _build(task, base)
    if incumbent is None:
        return None, f"the incumbent's params {base} do not build: {failure}"
    not_mlp = _not_mlp(incumbent)
    if not_mlp:
        return None, f"the model is not MLP-shaped ({not_mlp})"
    want, failure = _run(incumbent, x)
    if want is None:
        return None, f"the incumbent's model does not run on training inputs: {failure}"
    probe = _Prober(task, base, x, want, _signature(incumbent))

    space: SearchSpace = {}
    notes: list[str] = []
    skipped: list[str] = []
    for name in sorted(base):
        param, note = _infer_one(probe, name, base[name])
        if param is not None:
            space[name] = param
        (notes if param is not None else skipped).append(f"{name}: {note}")
    if not space:
        return None, "no architecture param could be searched: " + "; ".join(skipped)
    joint = _joint_failure(probe, space)
    if joint:
        return None, f"the params build one by one but not together ({joint})"
    reason = "; ".join(notes)
    if skipped:
        reason += "; not searched: " + "; ".join(skipped)
    logger.info("inferred a search space for task %s: %s", task.name, reason)
    return space, reason


# ---------------------------------------------------------------------- one param
def _infer_one(probe: _Prober, name: str, value: Any) -> tuple[Param | None, str]:
    """The param inferred for ``name`` (or ``None``) and a note on it."""
    lowered = name.lower()
    if isinstance(value, bool):
        return None, "a flag"
    if isinstance(value, int):
        if _is_depth(lowered):
            if value < 0:
                return None, f"depth {value} < 0"
            return _int_range(probe, name, value, 1 if value >= 1 else 0, max(value, 4), "depth")
        if _is_width(lowered):
            if value < 1:
                return None, f"width {value} < 1"
            high = max(value, min(16 * value, MAX_INFERRED_WIDTH))
            return _int_range(probe, name, value, max(1, value // 4), high, "width")
        return None, "an integer neither width- nor depth-like"
    if isinstance(value, float) and "dropout" in lowered:
        if not 0.0 <= value < 1.0:
            return None, f"dropout {value} outside [0, 1)"
        failure = probe.failure(name, 0.0) or probe.failure(name, 0.5)
        if failure:
            return None, failure
        if not probe.changes(name, 0.0, 0.5):
            return None, "the builder ignores it"
        return FloatParam(0.0, 0.5), "in [0, 0.5]"
    if isinstance(value, str) and "act" in lowered and value in ACTIVATIONS:
        choices = tuple(a for a in ACTIVATIONS if a == value or not probe.failure(name, a))
        if len(choices) < 2 or not probe.changes(name, *choices):
            return None, "the builder ignores it or takes no other activation"
        return CategoricalParam(choices), f"one of {list(choices)}"
    return None, f"a {type(value).__name__}, not inferred"


def _int_range(
    probe: _Prober, name: str, value: int, low: int, high: int, kind: str
) -> tuple[IntParam | None, str]:
    """``[low, high]`` with each failing end pulled toward ``value`` until it builds."""
    shrink: Callable[[int], int] = (lambda v: v // 2) if kind == "width" else (lambda v: v - 1)
    grow: Callable[[int], int] = (lambda v: v * 2) if kind == "width" else (lambda v: v + 1)
    failures: list[str] = []
    hi = high
    while hi > value and (failure := probe.failure(name, hi)):
        failures.append(f"{hi}: {failure}")
        hi = max(value, shrink(hi))
    lo = low
    while lo < value and (failure := probe.failure(name, lo)):
        failures.append(f"{lo}: {failure}")
        lo = min(value, grow(lo))
    if lo == hi:
        return None, f"only {value} builds ({'; '.join(failures[:2])})"
    if not probe.changes(name, lo, hi):
        return None, "the builder ignores it"
    log = kind == "width" and lo >= 1
    note = f"a {kind} in [{lo}, {hi}]{' (log)' if log else ''} around {value}"
    if failures:
        note += f" (capped from [{low}, {high}]: {failures[0]})"
    return IntParam(lo, hi, log=log), note


def _is_depth(name: str) -> bool:
    return any(h in name for h in _DEPTH_HINTS) and not any(
        h in name for h in ("width", "size", "dim", "units")
    )


def _is_width(name: str) -> bool:
    return any(h in name for h in _WIDTH_HINTS) and not any(h in name for h in _NOT_WIDTH)


# ---------------------------------------------------------------------- probing
class _Prober:
    """Builds ``task`` with one or more params changed from ``base`` and checks the result."""

    def __init__(
        self, task: Task, base: dict[str, Any], x: torch.Tensor, want: torch.Size, sig: _Signature
    ) -> None:
        self.task, self.base, self.x, self.want, self.sig = task, base, x, want, sig

    def failure(self, name: str, value: Any) -> str:
        """Why ``base`` with ``name = value`` is not usable ('' when it is)."""
        return self.failure_of({name: value})[0]

    def failure_of(self, changes: Mapping[str, Any]) -> tuple[str, _Signature]:
        """Why ``base`` with ``changes`` is not usable ('' when it is) and the model's signature."""
        module, failure = _build(self.task, {**self.base, **changes})
        if module is None:
            return failure, ()
        not_mlp = _not_mlp(module)
        if not_mlp:
            return f"not MLP-shaped: {not_mlp}", ()
        shape, failure = _run(module, self.x)
        if shape is None:
            return failure, ()
        if shape != self.want:
            return f"output shape {tuple(shape)}, not {tuple(self.want)}", ()
        return "", _signature(module)

    def changes(self, name: str, *values: Any) -> bool:
        """Whether some of ``values`` give a model other than the incumbent's."""
        sigs = {self.failure_of({name: v})[1] for v in values}
        return bool(sigs - {self.sig})


def _joint_failure(probe: _Prober, space: SearchSpace) -> str:
    """Why all the lows, or all the highs, of ``space`` together do not build ('' if they do)."""
    for end in ("low", "high"):
        changes = {
            n: getattr(p, end) for n, p in space.items() if not isinstance(p, CategoricalParam)
        }
        failure = probe.failure_of(changes)[0]
        if failure:
            return f"all {end}s {changes}: {failure}"
    return ""


def _build(task: Task, params: Mapping[str, Any]) -> tuple[nn.Module | None, str]:
    try:
        with torch_seeded(_PROBE_SEED):
            module = task.build(params)
    except Exception as exc:  # a user's builder may fail in any way: that value is not usable
        return None, f"{type(exc).__name__}: {exc}"
    if not isinstance(module, nn.Module):
        return None, f"the builder gave a {type(module).__name__}, not an nn.Module"
    return module, ""


@torch.no_grad()
def _run(module: nn.Module, x: torch.Tensor) -> tuple[torch.Size | None, str]:
    """The output shape of ``module`` on ``x`` in eval mode (``None`` and why, if unusable)."""
    module.eval()
    try:
        with torch_seeded(_PROBE_SEED):
            out = module(x)
    except Exception as exc:  # a wrong width can fail inside forward (shape mismatch)
        return None, f"forward failed: {type(exc).__name__}: {exc}"
    if not isinstance(out, torch.Tensor):
        return None, f"forward gave a {type(out).__name__}, not a tensor"
    if not bool(torch.isfinite(out).all()):
        return None, "forward gave non-finite outputs"
    return out.shape, ""


def _not_mlp(module: nn.Module) -> str:
    """'' if every weight of ``module`` is in a linear or normalisation layer, else what is not."""
    linear = False
    for name, sub in module.named_modules():
        if not any(True for _ in sub.parameters(recurse=False)):
            continue
        if not isinstance(sub, _MLP_LAYERS):
            return f"{name or 'the model'} is a {type(sub).__name__} with its own weights"
        linear = linear or isinstance(sub, nn.Linear)
    return "" if linear else "no nn.Linear layer"


def _signature(module: nn.Module) -> _Signature:
    """The model's structure: each leaf layer's repr (type, sizes, activation, dropout rate)."""
    return tuple(repr(m) for m in module.modules() if not any(True for _ in m.children()))
