"""Distillation's pieces: the loss, the choice of teacher, and precomputed teacher targets.

The formulas and the reasons behind them are in :mod:`selfimprove.strategies._distill`, the
strategy that uses these.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfimprove.errors import ConfigError
from selfimprove.nn.device import CPU, cpu_only, module_device

__all__ = [
    "KINDS",
    "LANGUAGE_MODEL",
    "NO_TEACHER",
    "TeacherChoice",
    "TeacherTargets",
    "batched_outputs",
    "choose_teacher",
    "distillation_loss",
    "eval_mode",
]

NO_TEACHER = (
    "no teacher: register another model of the same task, or keep earlier versions "
    "(model_backup_enabled) so that they can teach"
)

KINDS = ("classification", "regression")
#: The kind of a language-model task's teacher choice: outputs ``(N, T, V)`` next-token logits,
#: targets ``(N, T)`` token ids, scored by the mean next-token NLL.
LANGUAGE_MODEL = "language_model"
_BATCH = 1024  # rows per teacher forward when scoring or precomputing


# ---------------------------------------------------------------------- the loss
def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    targets: torch.Tensor,
    *,
    kind: str,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """The distillation loss of one batch (formulas: :mod:`selfimprove.strategies._distill`).

    Args:
        student: Student outputs, ``(B, C)`` logits or ``(B, K)`` regression outputs.
        teacher: For classification the teacher's probabilities **at temperature**
            ``temperature``, ``(B, C)`` (an ensemble's mean); for regression its outputs.
        targets: Labels ``(B,)`` (int) or regression targets ``(B, K)``.
        kind: ``"classification"`` or ``"regression"``.
        temperature: ``T`` (ignored for regression).
        alpha: Weight of the soft term.

    Returns:
        The scalar loss (with a gradient through ``student``).

    Raises:
        ConfigError: ``kind`` is neither classification nor regression.
    """
    if kind == "classification":
        hard = F.cross_entropy(student, targets)
        if alpha == 0.0:  # labels only: exactly the hard-label loss, no teacher term at all
            return hard
        log_q = F.log_softmax(student / temperature, dim=-1)  # (B, C)
        # kl_div(log q, p) = sum_c p_c (log p_c - log q_c), averaged over the batch.
        soft = F.kl_div(log_q, teacher, reduction="batchmean") * temperature**2
    elif kind == "regression":
        hard = F.mse_loss(student, targets)
        if alpha == 0.0:
            return hard
        soft = F.mse_loss(student, teacher)
    else:
        raise ConfigError(f"distillation needs kind in {KINDS}, but got {kind!r}.")
    return alpha * soft + (1.0 - alpha) * hard


# ---------------------------------------------------------------------- choosing a teacher
@dataclass(frozen=True)
class TeacherChoice:
    """The teacher (one, or an ensemble) chosen on the training holdout.

    Attributes:
        members: Indices of the chosen teachers (best single first).
        score: Holdout score of the choice: ``{"accuracy", "nll"}`` or ``{"mse"}``.
        incumbent: The incumbent's holdout score (same keys).
        considered: Every option scored, as ``{"members": [...], **score}``.
    """

    members: tuple[int, ...]
    score: dict[str, float]
    incumbent: dict[str, float]
    considered: list[dict[str, Any]]

    @property
    def ensemble(self) -> bool:
        return len(self.members) > 1


def _holdout_score(kind: str, outputs: Sequence[torch.Tensor], y: torch.Tensor) -> dict[str, float]:
    """Score of the mean prediction of ``outputs`` (one or more models) against ``y``."""
    if kind == LANGUAGE_MODEL:  # every token is one classification: (N, T, V) -> (N*T, V)
        flat = [o.reshape(-1, o.shape[-1]).float() for o in outputs]
        return _holdout_score("classification", flat, y.reshape(-1))
    if kind == "classification":
        probs = torch.stack([o.softmax(dim=-1) for o in outputs]).mean(dim=0)  # (N, C)
        acc = float((probs.argmax(dim=-1) == y).double().mean())
        p_true = probs.gather(1, y[:, None]).squeeze(1)  # (N,)
        nll = float(-p_true.clamp_min(1e-12).log().double().mean())
        return {"accuracy": acc, "nll": nll}
    mean = torch.stack(list(outputs)).mean(dim=0)  # (N, K)
    return {"mse": float(((mean.double() - y.double()) ** 2).mean())}


def _key(kind: str, score: Mapping[str, float]) -> tuple[float, ...]:
    """Sort key, higher is better: accuracy then lower NLL; a language model's lower NLL (its
    objective); or lower MSE."""
    if kind == LANGUAGE_MODEL:
        return (-score["nll"],)
    if kind == "classification":
        return (score["accuracy"], -score["nll"])
    return (-score["mse"],)


def choose_teacher(
    kind: str,
    targets: torch.Tensor,
    incumbent: torch.Tensor,
    teachers: Sequence[torch.Tensor],
    names: Sequence[str],
) -> tuple[TeacherChoice | None, str]:
    """Pick the best teacher, or ensemble, on a holdout; a pure decision with its reason.

    Each teacher alone is scored, then the ensembles of the best ``k`` (``k >= 2``, ranked by
    their single scores); an ensemble is chosen only if it scores strictly better than the best
    single teacher. Classification ranks by accuracy, then by the NLL of the (mean)
    probabilities; a language model by the mean next-token NLL of the (mean) probabilities;
    regression by MSE of the (mean) outputs.

    Args:
        kind: ``"classification"``, ``"regression"`` or :data:`LANGUAGE_MODEL`.
        targets: Holdout labels ``(N,)``, targets ``(N, K)`` or next tokens ``(N, T)``.
        incumbent: The incumbent's holdout outputs ``(N, C)`` / ``(N, K)`` / ``(N, T, V)``.
        teachers: Each teacher's holdout outputs, same shape as ``incumbent``.
        names: A readable name per teacher (for the reason).

    Returns:
        ``(choice, reason)``; ``choice`` is ``None`` when no option beats the incumbent.

    Raises:
        ConfigError: ``teachers`` and ``names`` differ in length.
    """
    if len(teachers) != len(names):
        raise ConfigError(f"need one name per teacher, but got {len(teachers)} and {len(names)}.")
    inc = _holdout_score(kind, [incumbent], targets)
    if not teachers:
        return None, NO_TEACHER
    singles = [_holdout_score(kind, [t], targets) for t in teachers]
    ranked = sorted(range(len(teachers)), key=lambda i: _key(kind, singles[i]), reverse=True)
    options: list[tuple[tuple[int, ...], dict[str, float]]] = [((i,), singles[i]) for i in ranked]
    for k in range(2, len(ranked) + 1):
        members = tuple(ranked[:k])
        options.append((members, _holdout_score(kind, [teachers[i] for i in members], targets)))
    best_members, best = options[0]
    for members, score in options[1:]:
        if _key(kind, score) > _key(kind, best):  # strictly better: ties keep the simpler one
            best_members, best = members, score
    considered = [{"members": [names[i] for i in m], **s} for m, s in options]

    def shown(s: Mapping[str, float]) -> str:
        return ", ".join(f"{k} {v:.4g}" for k, v in s.items())

    label = " + ".join(names[i] for i in best_members)
    if _key(kind, best) <= _key(kind, inc):
        return None, (
            f"no teacher beats the incumbent on the training holdout: best {label} "
            f"({shown(best)}) vs incumbent ({shown(inc)})"
        )
    choice = TeacherChoice(best_members, best, inc, considered)
    return choice, f"{'ensemble' if choice.ensemble else 'teacher'} {label} ({shown(best)})"


# ---------------------------------------------------------------------- teacher outputs
@contextlib.contextmanager
def eval_mode(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Put ``modules`` in eval mode for a block, then restore every submodule's own flag."""
    flags = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


@torch.no_grad()
def batched_outputs(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` in batches, run where ``module`` is (an int8 teacher stays on the CPU
    beside a student on CUDA) and returned on ``x``'s device; the caller holds eval mode.
    ``no_grad`` rather than ``inference_mode``: these tensors later enter the student's
    autograd graph as targets."""
    where = CPU if cpu_only(module) else module_device(module)
    return torch.cat(
        [module(x[i : i + _BATCH].to(where)).to(x.device) for i in range(0, len(x), _BATCH)]
    )


def _row_keys(x: torch.Tensor) -> list[bytes]:
    """One exact key per input row: its bytes."""
    rows = x.detach().cpu().contiguous().reshape(len(x), -1).numpy()  # (B, D)
    return [r.tobytes() for r in rows]


class TeacherTargets:
    """Teacher targets precomputed once over the training inputs, looked up by input bytes.

    Why precompute rather than run the teacher on each batch: the teacher (or every member of an
    ensemble) then runs once over the ``N`` training rows instead of once per epoch, and never
    in the student's training loop. ``train_`` shuffles with its own generator and hands
    ``loss_fn`` only the batch's inputs, so the batch is matched back by content: a teacher in
    eval mode is a function of its input, so two identical rows (even with different labels)
    rightly share one target. A row not seen here (a task whose training inputs change between
    calls) is computed directly and counted as a miss.

    Args:
        x: The training inputs ``(N, ...)``.
        compute: Inputs ``(B, ...)`` -> targets ``(B, C)`` (probabilities at ``T``) or ``(B, K)``.
    """

    def __init__(self, x: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self._compute = compute
        self._table = compute(x)  # (N, C) or (N, K)
        self._index = {key: i for i, key in enumerate(_row_keys(x))}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._table)

    @property
    def table(self) -> torch.Tensor:
        """The precomputed targets of the training inputs, ``(N, ...)`` (read only)."""
        return self._table

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        keys = _row_keys(xb)
        idx = [self._index.get(k, -1) for k in keys]
        missing = [j for j, i in enumerate(idx) if i < 0]
        self.hits += len(idx) - len(missing)
        self.misses += len(missing)
        if not missing:
            return self._table[torch.tensor(idx)]  # (B, C)
        out = self._table.new_empty((len(xb), *self._table.shape[1:]))
        found = [j for j, i in enumerate(idx) if i >= 0]
        if found:
            out[found] = self._table[torch.tensor([idx[j] for j in found])]
        out[missing] = self._compute(xb[missing])
        return out
