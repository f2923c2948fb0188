"""Distillation by feature mapping: FitNets hints (Romero et al., 2015).

Beside the soft targets, the student's last hidden layer is asked to predict the teacher's last
hidden layer through a learned linear map ``r`` (the "regressor"), trained jointly with the
student and thrown away afterwards::

    L_hint = ||r(h_s) - h_t||^2 / mean(h_t^2)        r(h) = W h + b, W: (H_t, H_s)

with ``h_s`` the student's post-activation output of its last hidden layer ``(B, H_s)`` and
``h_t`` the teacher's ``(B, H_t)``; the squared error is averaged over the batch and the
teacher's units. Dividing by ``mean(h_t^2)`` (one constant, taken over the training rows) is
still FitNets' L2 loss, rescaled so that a ``hint_weight`` means the same for teachers whose
activations have different scales: ``L_hint = 1`` is the error of predicting all zeros.

Which pairs get hints is decided by their structure (:func:`hint_pair`): both models must be
``build_mlp``-shaped MLPs (see :func:`selfimprove.nn.mlp.parse_mlp`) with at least one hidden
layer. Any other pair (a quantized teacher, a student without a hidden layer, a model of another
shape) is distilled with soft targets alone, and the reason is recorded.

Hints are the feature term of MLP pairs. A language model's student is a GPT-2, whose feature
term is attention transfer (Zagoruyko & Komodakis, 2017):
:mod:`selfimprove.strategies._distill_attention`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from selfimprove.errors import StrategyError
from selfimprove.nn.mlp import parse_mlp
from selfimprove.seeding import torch_seeded
from selfimprove.strategies._distill_teacher import batched_outputs

__all__ = ["HintPair", "HintedStudent", "hint_loss", "hint_pair", "outputs_and_features"]


@dataclass(frozen=True)
class HintPair:
    """Where the hint is read in each model of a pair (see :func:`hint_pair`).

    Attributes:
        student_layer: Position, in the student's ``nn.Sequential``, of the activation of its
            last hidden layer.
        teacher_layer: The same position in the teacher.
        student_width: Units of that layer in the student (``H_s``).
        teacher_width: Units of that layer in the teacher (``H_t``).
    """

    student_layer: int
    teacher_layer: int
    student_width: int
    teacher_width: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "student_layer": self.student_layer,
            "teacher_layer": self.teacher_layer,
            "student_width": self.student_width,
            "teacher_width": self.teacher_width,
        }


def _last_hidden(module: nn.Module, role: str) -> tuple[int, int] | str:
    """``(position of the last hidden activation, its width)`` of an MLP, or why there is none."""
    try:
        mlp = parse_mlp(module, purpose="hints")
    except StrategyError as exc:
        return f"the {role} is not a build_mlp MLP ({exc})"
    if mlp.depth == 0:
        return f"the {role} has no hidden layer"
    return mlp.linear_positions[-2] + 1, mlp.widths[-1]


def hint_pair(student: nn.Module, teacher: nn.Module) -> HintPair | str:
    """Whether a pair allows hints, and where: a pure decision, with its reason when not.

    Args:
        student: The student to be trained.
        teacher: The teacher whose hidden layer guides it.

    Returns:
        The layers to match (last hidden layer of each), or why the pair allows no hint.
    """
    s = _last_hidden(student, "student")
    if isinstance(s, str):
        return s
    t = _last_hidden(teacher, "teacher")
    if isinstance(t, str):
        return t
    return HintPair(s[0], t[0], s[1], t[1])


@contextmanager
def _kept_outputs(layer: nn.Module) -> Iterator[list[torch.Tensor]]:
    """A list that receives ``layer``'s output at every forward while the block runs."""
    seen: list[torch.Tensor] = []

    def keep(_m: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        seen.append(output)

    handle = layer.register_forward_hook(keep)
    try:
        yield seen
    finally:
        handle.remove()


def outputs_and_features(
    module: nn.Module, layer: int, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A teacher's outputs and the activations of its ``layer``-th module, in one pass.

    The caller holds eval mode (:func:`~selfimprove.strategies._distill_teacher.eval_mode`).

    Args:
        module: The teacher (an ``nn.Sequential``).
        layer: Position of the hint layer (:attr:`HintPair.teacher_layer`).
        x: Inputs ``(N, D)``.

    Returns:
        Outputs ``(N, C)`` or ``(N, K)``, and features ``(N, H_t)``, without gradients.
    """
    seq = cast(nn.Sequential, module)
    with _kept_outputs(seq[layer]) as seen:
        out = batched_outputs(module, x)
    return out, torch.cat(seen).reshape(len(x), -1)


class HintedStudent(nn.Module):
    """The student and the hint regressor, trained as one module; its forward is the student's.

    ``train_`` optimises (and clips) every parameter of the module it is given, so wrapping the
    student is how the regressor trains jointly with it. A forward hook keeps the student's hint
    layer output of the latest forward in :attr:`hidden`. :meth:`release` removes the hook and
    returns the student alone, so the saved candidate has exactly the student's parameters.

    Args:
        student: The student (trained in place).
        pair: Where the hint is read.
        seed: Seeds the regressor's initialisation (never the global RNG).
    """

    def __init__(self, student: nn.Module, pair: HintPair, seed: int) -> None:
        super().__init__()
        self.student = student
        ref = next(student.parameters())
        with torch_seeded(seed):  # nn.Linear's default init, from a forked, seeded RNG
            self.regressor = nn.Linear(pair.student_width, pair.teacher_width)
        self.regressor.to(device=ref.device, dtype=ref.dtype)
        self.hidden: torch.Tensor | None = None
        layer = cast(nn.Sequential, student)[pair.student_layer]
        self._handle = layer.register_forward_hook(self._keep)

    def _keep(self, _m: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        self.hidden = output  # (B, H_s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.student(x))

    def mapped(self) -> torch.Tensor:
        """``r(h_s)`` of the latest forward, ``(B, H_t)``.

        Raises:
            StrategyError: No forward has run yet.
        """
        if self.hidden is None:
            raise StrategyError("the hinted student has not run a forward yet.")
        return cast(torch.Tensor, self.regressor(self.hidden.reshape(len(self.hidden), -1)))

    def release(self) -> nn.Module:
        """Remove the hook and return the student alone (the regressor is discarded)."""
        self._handle.remove()
        self.hidden = None
        return self.student


def hint_loss(mapped: torch.Tensor, features: torch.Tensor, scale: float) -> torch.Tensor:
    """``||r(h_s) - h_t||^2 / scale``, averaged over the batch and the teacher's units.

    Args:
        mapped: ``r(h_s)``, ``(B, H_t)``.
        features: The teacher's ``h_t``, ``(B, H_t)``.
        scale: ``mean(h_t^2)`` over the training rows (positive).
    """
    return F.mse_loss(mapped, features) / scale
