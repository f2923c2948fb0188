"""Distillation by attention transfer (Zagoruyko & Komodakis, 2017), adapted to GPT-2 students.

The paper asks a student's attention maps to match its teacher's, each map normalised::

    L_at = sum_j || Q_s^j / ||Q_s^j||_2 - Q_t^j / ||Q_t^j||_2 ||_p

For a transformer, the attention map of a layer is taken here as the mean over its heads of
the attention probabilities, ``(B, T, T)``: head counts may differ between the two models (a
pruned student of its unpruned parent), and the mean over heads makes the two maps comparable
whatever they are. Each sequence's map is flattened to ``T * T`` values and L2-normalised; the
term is the **squared** distance between the two normalised maps, averaged over the batch and
over the matched layers::

    a = mean_h(P_h) / ||mean_h(P_h)||_2            P_h: (B, T, T), a: (B, T*T)
    L_at = mean_layers mean_batch ||a_s - a_t||_2^2    (0 when equal, at most 4)

The square (the paper uses ``p = 2`` unsquared) keeps the term smooth where the maps agree: a
warm-started student begins next to its teacher, where the unsquared norm's gradient has no
limit.

Layers are matched by relative depth: student layer ``i`` of ``L_s`` with teacher layer
``round(i * (L_t - 1) / (L_s - 1))`` (the same index when the depths are equal; a one-layer
student matches the teacher's last layer).

Which pairs: both models must be :class:`~selfimprove.tasks.language.CausalLM` wrappers around
GPT-2 models whose positions cover the task's window (:func:`attention_pair`); any other pair
is distilled with soft targets alone, and the reason is recorded.

Attention probabilities come from ``transformers`` itself (``output_attentions=True``), which
returns them only from its eager attention; :func:`eager_attention` switches both models to it
for the training and back afterwards (the default, ``sdpa``, computes the same logits within
1e-6 on ``tiny``, without materialising the probabilities).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfimprove.errors import StrategyError
from selfimprove.nn.transformer.gates import heads_per_layer
from selfimprove.nn.transformer.hf import is_gpt2

__all__ = [
    "AttentionPair",
    "attention_loss",
    "attention_maps",
    "attention_pair",
    "eager_attention",
    "gpt2_of",
    "logits_and_attentions",
    "match_layers",
]


@dataclass(frozen=True)
class AttentionPair:
    """Which layers of a student and its teacher are matched (see :func:`attention_pair`).

    Attributes:
        teacher_layers: For each student layer, the teacher layer it matches.
        student_heads: Heads per layer of the student.
        teacher_heads: Heads per layer of the teacher.
    """

    teacher_layers: tuple[int, ...]
    student_heads: tuple[int, ...]
    teacher_heads: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "teacher_layers": list(self.teacher_layers),
            "student_heads": list(self.student_heads),
            "teacher_heads": list(self.teacher_heads),
        }


def match_layers(n_student: int, n_teacher: int) -> tuple[int, ...]:
    """The teacher layer of each student layer, by relative depth.

    Args:
        n_student: Student layers ``L_s`` (>= 1).
        n_teacher: Teacher layers ``L_t`` (>= 1).

    Returns:
        ``L_s`` teacher indices: ``round(i * (L_t - 1) / (L_s - 1))``; the same index when the
        depths are equal; the teacher's last layer for a one-layer student.

    Raises:
        StrategyError: A model without layers.
    """
    if n_student < 1 or n_teacher < 1:
        raise StrategyError(
            f"attention transfer needs layers on both sides, but got {n_student=}, {n_teacher=}."
        )
    if n_student == n_teacher:
        return tuple(range(n_student))
    if n_student == 1:
        return (n_teacher - 1,)
    return tuple(round(i * (n_teacher - 1) / (n_student - 1)) for i in range(n_student))


def gpt2_of(module: nn.Module) -> Any | None:
    """The ``GPT2LMHeadModel`` in a ``CausalLM`` wrapper (or the model itself), else ``None``."""
    inner = getattr(module, "gpt2", module)
    return inner if is_gpt2(inner) else None


def _positions(gpt2: Any) -> int:
    return int(getattr(gpt2.config, "n_positions", 0) or 0)


def attention_pair(student: nn.Module, teacher: nn.Module, context: int) -> AttentionPair | str:
    """Whether a pair allows attention transfer, and which layers: a pure decision, with its
    reason when not.

    Args:
        student: The student (a ``CausalLM`` around a GPT-2).
        teacher: The teacher (the same kind).
        context: Tokens per training window (both models must attend over all of them).

    Returns:
        The matched layers, or why the pair has no comparable attention maps.
    """
    heads: list[list[int]] = []
    for role, module in (("student", student), ("teacher", teacher)):
        gpt2 = gpt2_of(module)
        if gpt2 is None:
            return (
                f"the {role} is not a GPT-2 causal language model ({type(module).__name__}), "
                "so it has no attention maps to match"
            )
        if _positions(gpt2) < context:
            return (
                f"the {role} attends over {_positions(gpt2)} positions, fewer than the task's "
                f"windows of {context} tokens"
            )
        heads.append(heads_per_layer(gpt2))
    s_heads, t_heads = heads
    return AttentionPair(match_layers(len(s_heads), len(t_heads)), tuple(s_heads), tuple(t_heads))


@contextmanager
def eager_attention(models: Sequence[nn.Module]) -> Iterator[None]:
    """Run the GPT-2s inside ``models`` with eager attention for a block, then restore each one's
    own implementation (the attention modules read it from the shared config at every call)."""
    configs = [g.config for g in (gpt2_of(m) for m in models) if g is not None]
    saved = [c._attn_implementation for c in configs]
    try:
        for c in configs:
            c._attn_implementation = "eager"
        yield
    finally:
        for c, impl in zip(configs, saved, strict=True):
            c._attn_implementation = impl


def logits_and_attentions(
    model: Any, input_ids: torch.Tensor
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Logits and attention probabilities of a GPT-2 in one forward (inside
    :func:`eager_attention`).

    Args:
        model: A ``GPT2LMHeadModel``.
        input_ids: ``(B, T)`` token ids.

    Returns:
        Logits ``(B, T, V)`` and, per layer, probabilities ``(B, h_l, T, T)``.

    Raises:
        StrategyError: The model returned no attention probabilities (not in eager mode).
    """
    out = model(input_ids=input_ids, output_attentions=True)
    attentions = tuple(out.attentions or ())
    if len(attentions) != len(model.transformer.h) or any(a is None for a in attentions):
        raise StrategyError(
            "the model returned no attention probabilities; run it inside eager_attention "
            f"(its attention implementation is {model.config._attn_implementation!r})."
        )
    return out.logits, attentions


def attention_maps(attentions: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per layer, the normalised attention map of each sequence: ``(B, h, T, T) -> (B, T*T)``."""
    maps = []
    for probs in attentions:
        mean = probs.float().mean(dim=1)  # (B, h, T, T) -> (B, T, T): heads may differ in number
        maps.append(F.normalize(mean.flatten(1), p=2.0, dim=1))  # (B, T*T), unit L2 norm
    return maps


def attention_loss(
    student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], pair: AttentionPair
) -> torch.Tensor:
    """``mean_layers mean_batch ||a_s - a_t||^2`` over the matched layers.

    Args:
        student: The student's maps, one ``(B, T*T)`` per layer (:func:`attention_maps`).
        teacher: The teacher's maps, one per teacher layer.
        pair: Which teacher layer each student layer matches.

    Returns:
        The scalar term (with a gradient through ``student``).
    """
    terms = [
        (a_s - teacher[j]).pow(2).sum(dim=1).mean()  # (B, T*T) -> (B,) -> ()
        for a_s, j in zip(student, pair.teacher_layers, strict=True)
    ]
    return torch.stack(terms).mean()
