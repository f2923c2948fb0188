"""``distill``: knowledge distillation from a better teacher (Hinton, Vinyals & Dean, 2015).

A student learns from the teacher's outputs as well as from the labels. For classification,
with student logits ``z_s``, teacher logits ``z_t``, labels ``y``, temperature ``T`` and weight
``alpha``::

    L = alpha * T**2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(y, z_s)

The ``T**2`` keeps the soft term's gradients on the scale of the hard term's as ``T`` grows
(the gradient of the softened KL shrinks as ``1 / T**2``). For regression::

    L = alpha * MSE(student, teacher) + (1 - alpha) * MSE(student, y)

An ensemble teacher contributes the mean of its members' softened probabilities (classification)
or the mean of their outputs (regression).

Feature mapping (FitNets hints, Romero et al., 2015), where the pair's structure allows it (two
``build_mlp`` MLPs with hidden layers) and ``hint_weight > 0``: a learned linear map from the
student's last hidden layer to the teacher's, trained jointly and discarded after training, adds
``hint_weight * ||r(h_s) - h_t||^2 / mean(h_t^2)`` to the loss (details:
:mod:`selfimprove.strategies._distill_hints`; an ensemble's hints come from its best single
member). The candidate is the student alone, with exactly its own parameters. The default
``hint_weight`` is :data:`DEFAULT_HINT_WEIGHT`, set by what ``benchmarks/distillation.py``
measured.

Language models (a :class:`~selfimprove.tasks.language.LanguageModelTask`): the soft term is the
same, per token, on the teacher's next-token distributions at temperature ``T``::

    L = alpha * T**2 * mean_tokens KL(softmax(z_t / T) || softmax(z_s / T))
        + (1 - alpha) * mean_tokens CE(y, z_s)

trained with :func:`~selfimprove.measure.finetune.finetune_` (AdamW, warm-up then cosine decay,
``steps`` steps of ``batch_size`` seeded random windows of the training stream, as ``heads``
fine-tunes), the teacher run on each batch. Attention transfer (Zagoruyko & Komodakis, 2017),
where both models are GPT-2 causal LMs over the task's windows and ``attention_weight > 0``, adds
``attention_weight * mean_layers ||a_s - a_t||^2``, ``a`` a layer's head-averaged attention map
normalised per sequence (details: :mod:`selfimprove.strategies._distill_attention`; an
ensemble's maps come from its best single member). The default ``attention_weight`` is
:data:`DEFAULT_ATTENTION_WEIGHT`, set by what ``benchmarks/distillation.py`` measured. The case
that matters: a GPT-2 whose heads were pruned, taught by its unpruned parent version.

Which teacher: every teacher in the context (other models of the task, earlier versions of this
one), and ensembles of the best ``k`` of them, are scored on a holdout carved (seeded) out of the
**training** split, the same holdout the student's early stopping watches (for a language
model, at most 256 of its training windows, scored by next-token NLL); the validation and test
splits are left to the judge. A teacher is used only if it beats the incumbent there.

Which student: a warm-started copy of the incumbent; or, when the objective is latency, size or
parameter count (or ``student_params`` is given), a smaller architecture trained from a fresh
seeded initialisation (half the width of ``build_mlp``-style params by default).

Teacher outputs are computed once over the training inputs before training, then looked up for
each batch by the bytes of its input rows (see :class:`TeacherTargets`).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

import selfimprove.nn.quantize as quantize
from selfimprove.errors import ConfigError, StrategyError, TaskError
from selfimprove.measure.finetune import FINETUNE_LR, FinetuneConfig, FinetuneResult, finetune_
from selfimprove.measure.training import (
    TRAIN_OVERRIDES,
    TrainConfig,
    TrainResult,
    _holdout_split,
    train_,
)
from selfimprove.nn.modules import TRANSFORM_KEYS, arch_params
from selfimprove.objectives import EFFICIENCY_OBJECTIVES
from selfimprove.registry import LoadedModel
from selfimprove.seeding import derive_seed, torch_seeded
from selfimprove.strategies._base import Candidate, Cost, Strategy, StrategyContext
from selfimprove.strategies._distill_attention import (
    AttentionPair,
    attention_loss,
    attention_maps,
    attention_pair,
    eager_attention,
    gpt2_of,
    logits_and_attentions,
)
from selfimprove.strategies._distill_hints import (
    HintedStudent,
    HintPair,
    hint_loss,
    hint_pair,
    outputs_and_features,
)
from selfimprove.strategies._distill_teacher import (
    KINDS,
    LANGUAGE_MODEL,
    NO_TEACHER,
    TeacherChoice,
    TeacherTargets,
    batched_outputs,
    choose_teacher,
    distillation_loss,
    eval_mode,
)
from selfimprove.strategies._params import TRAIN_PARAMS, Param, check_params
from selfimprove.tasks import Split, Task
from selfimprove.tasks.language import LanguageModelTask

__all__ = [
    "DEFAULT_ATTENTION_WEIGHT",
    "DEFAULT_HINT_WEIGHT",
    "DISTILL_PARAMS",
    "DistillConfig",
    "DistillStrategy",
    "smaller_params",
]

logger = logging.getLogger(__name__)

#: Objectives for which the student is a smaller architecture, not a copy of the incumbent.
COMPRESSION_OBJECTIVES = EFFICIENCY_OBJECTIVES
#: Weight of the FitNets hint term by default (see ``benchmarks/distillation.py``).
DEFAULT_HINT_WEIGHT = 0.0
#: Weight of the attention-transfer term by default, as ``benchmarks/distillation.py``'s declared
#: rule decided: on a tiny GPT-2 with half its heads pruned, taught by its parent for 150 steps,
#: 0.1 lowered test perplexity in 6 of 6 seeds against soft targets alone (p 0.0005), by a
#: median of only 0.05 % (validation: no difference), at ~8 % more time per step; 1 and 10 hurt
#: (+0.27 %, +4 %).
DEFAULT_ATTENTION_WEIGHT = 0.1
#: Most training windows a language model's teachers are scored on.
LM_HOLDOUT_WINDOWS = 256
#: Windows per step of a language model's distillation, unless ``batch_size`` is given.
LM_BATCH_SIZE = 16
#: The :data:`TRAIN_PARAMS` a language model's fine-tuning has no use for (AdamW, warm-up and
#: cosine decay, a fixed number of steps).
LM_IGNORED = ("optimizer", "schedule", "patience")


# ---------------------------------------------------------------------- settings
#: ``distill``'s settings: its own and the student's training overrides.
DISTILL_PARAMS: dict[str, Param] = {
    "temperature": Param("float", 0.0, 1000.0, low_open=True, example="temperature=4"),
    "alpha": Param("float", 0.0, 1.0, example="alpha=0.7 (1: teacher only, 0: labels only)"),
    "student_params": Param("json", example='student_params={"width": 32, "depth": 1}'),
    "hint_weight": Param(
        "float",
        0.0,
        1000.0,
        example="hint_weight=1 (FitNets hints: last hidden layers matched; 0: soft targets only)",
    ),
    "attention_weight": Param(
        "float",
        0.0,
        1000.0,
        example="attention_weight=1 (attention transfer for GPT-2 students; 0: soft targets only)",
    ),
    "steps": Param("int", 1, 1_000_000, example="steps=100 (language models: fine-tuning steps)"),
    **TRAIN_PARAMS,
}


@dataclass(frozen=True)
class DistillConfig:
    """Distillation settings, read from ``context.params`` and checked at once.

    Attributes:
        temperature: Softmax temperature ``T`` of the soft term (classification only).
        alpha: Weight of the soft (teacher) term; ``1 - alpha`` weighs the hard labels.
        student_params: Architecture params of a fresh student (``None``: warm-start a copy of
            the incumbent, or halve its width when the objective is latency or size).
        hint_weight: Weight of the FitNets hint term (0: none); used where the pair of models
            allows it (see :mod:`selfimprove.strategies._distill_hints`).
        attention_weight: Weight of the attention-transfer term (0: none); used where the pair
            allows it (see :mod:`selfimprove.strategies._distill_attention`).
        steps: Fine-tuning steps of a language-model student (fewer if the seconds run out).
        train: Overrides of :class:`TrainConfig` fields (``lr``, ``batch_size``, ...).
    """

    temperature: float = 4.0
    alpha: float = 0.7
    student_params: dict[str, Any] | None = None
    hint_weight: float = DEFAULT_HINT_WEIGHT
    attention_weight: float = DEFAULT_ATTENTION_WEIGHT
    steps: int = 100
    train: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        own: dict[str, Any] = {
            "temperature": self.temperature,
            "alpha": self.alpha,
            "hint_weight": self.hint_weight,
            "attention_weight": self.attention_weight,
            "steps": self.steps,
        }
        if self.student_params is not None:
            own["student_params"] = self.student_params
        check_params("distill", DISTILL_PARAMS, {**own, **self.train})
        transforms = sorted(set(self.student_params or ()) & set(TRANSFORM_KEYS))
        if transforms:
            raise ConfigError(
                f"distill student_params must be architecture params only, but got "
                f"{transforms} in {self.student_params}; train the student first, then quantize "
                "it with its own strategy."
            )

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> DistillConfig:
        """Settings from a strategy's ``params``, checked against :data:`DISTILL_PARAMS`.

        Args:
            params: ``temperature``, ``alpha``, ``student_params``, ``hint_weight``,
                ``attention_weight``, ``steps`` and :data:`TRAIN_OVERRIDES`.

        Returns:
            The checked settings.

        Raises:
            ConfigError: An unknown key or a bad value.
        """
        p = check_params("distill", DISTILL_PARAMS, params)
        return cls(
            temperature=p.get("temperature", cls.temperature),
            alpha=p.get("alpha", cls.alpha),
            student_params=p.get("student_params"),
            hint_weight=p.get("hint_weight", cls.hint_weight),
            attention_weight=p.get("attention_weight", cls.attention_weight),
            steps=p.get("steps", cls.steps),
            train={k: p[k] for k in TRAIN_OVERRIDES if k in p},
        )


# ---------------------------------------------------------------------- students
def smaller_params(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """Half the width of ``build_mlp``-style params (``width`` or ``widths``).

    Args:
        params: A version's params (transform keys such as ``quantization`` are dropped).

    Returns:
        The smaller params, or ``None`` when they are not ``build_mlp``-style or already
        width 1 everywhere.
    """
    out = arch_params(params)
    if "widths" in out and out["widths"] is not None:
        widths = [int(w) for w in out["widths"]]
        out["widths"] = [max(1, w // 2) for w in widths]
        return out if out["widths"] != widths else None
    if "width" in out:
        width = int(out["width"])
        out["width"] = max(1, width // 2)
        return out if out["width"] != width else None
    return None


# ---------------------------------------------------------------------- the strategy
@dataclass(frozen=True)
class _Plan:
    """Everything decided before training."""

    settings: DistillConfig
    config: TrainConfig
    kind: str
    fit: Split
    choice: TeacherChoice
    teachers: tuple[LoadedModel, ...]
    student_params: dict[str, Any]
    fresh: bool
    skipped: list[dict[str, str]]


def _unbuildable(task: Task, params: Mapping[str, Any]) -> str | None:
    """Why ``task`` cannot build ``params`` (``None``: it can)."""
    try:
        with torch_seeded(0):  # a throwaway build must not draw from the caller's RNG
            task.build(params)
    except TaskError as exc:
        return str(exc)
    return None


def _name(t: LoadedModel) -> str:
    return f"{t.model.name} v{t.version.number}"


class DistillStrategy(Strategy):
    """Knowledge distillation from the best teacher (or ensemble) found on the training holdout.

    Settings in ``context.params``: ``temperature`` (default 4), ``alpha`` (default 0.7),
    ``student_params`` (a fresh, usually smaller, student), ``hint_weight`` (FitNets hints,
    default :data:`DEFAULT_HINT_WEIGHT`), ``attention_weight`` (attention transfer, default
    :data:`DEFAULT_ATTENTION_WEIGHT`), ``steps`` (language models) and the :class:`TrainConfig`
    fields of :data:`TRAIN_OVERRIDES`; epochs and seconds come from the budget, the seed from the
    context. A language model's fine-tuning reads ``lr``, ``batch_size``, ``weight_decay`` and
    ``clip_norm``, and records the others as ignored.
    """

    name = "distill"
    family = "distillation"
    needs_teachers = True
    PARAMS = DISTILL_PARAMS

    def config(self, context: StrategyContext, settings: DistillConfig) -> TrainConfig:
        """The training config: budget epochs and seconds, context seed, user overrides.

        Raises:
            ConfigError: An override is out of range or of the wrong type.
        """
        base = TrainConfig(
            epochs=context.budget.epochs,
            max_seconds=max(context.remaining(), 0.01),
            seed=context.seed,
        )
        try:
            return replace(base, **settings.train)
        except TypeError as exc:
            raise ConfigError(f"bad distill training setting in {settings.train}: {exc}") from None

    def applicable(self, incumbent: LoadedModel, context: StrategyContext) -> str | None:
        """``None`` if a teacher beats the incumbent on the training holdout, else why not.

        Raises:
            ConfigError: ``context.params`` holds an unknown key or a bad value.
        """
        plan = self._plan(incumbent, context)
        return plan if isinstance(plan, str) else None

    def apply(self, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
        """Distil the chosen teacher(s) into a student; incumbent and teachers stay unchanged.

        Args:
            incumbent: The model to improve.
            context: Task, objective, budget, seed, teachers and settings.

        Returns:
            The trained student, with ``origin`` ``teacher:<name> v<n>`` or
            ``ensemble:<name> v<n>+...``.

        Raises:
            StrategyError: Not applicable (no teacher, none better, ...).
            ConfigError: Bad settings.
            DivergedError: Training produced NaN or infinite values.
        """
        t0 = time.perf_counter()
        plan = self._plan(incumbent, context)
        if isinstance(plan, str):
            raise StrategyError(f"distill cannot run on {incumbent.model.name}: {plan}")
        if plan.kind == LANGUAGE_MODEL:
            return self._apply_language_model(incumbent, context, plan, t0)
        task, s = context.task, plan.settings
        teachers = [t.module for t in plan.teachers]
        temperature = float(s.temperature)
        if plan.fresh:
            with torch_seeded(context.seed):
                student = task.build(plan.student_params)
        else:
            student = copy.deepcopy(incumbent.module)
        # Hints come from the best single teacher (an ensemble's first member), where the
        # structure of the pair allows them.
        pair = hint_pair(student, teachers[0]) if s.hint_weight > 0 else "hint_weight is 0"
        hints = pair if isinstance(pair, HintPair) else None

        def soft(outs: list[torch.Tensor]) -> torch.Tensor:
            if plan.kind == "classification":
                return torch.stack([(o / temperature).softmax(dim=-1) for o in outs]).mean(dim=0)
            return torch.stack(outs).mean(dim=0)

        def teacher_targets(x: torch.Tensor) -> torch.Tensor:
            with eval_mode(teachers):
                if hints is None:
                    return soft([batched_outputs(m, x) for m in teachers])  # (B, C) or (B, K)
                first, features = outputs_and_features(teachers[0], hints.teacher_layer, x)
                outs = [first, *(batched_outputs(m, x) for m in teachers[1:])]
            return torch.cat([soft(outs), features], dim=1)  # (B, C + H_t)

        cache = TeacherTargets(plan.fit.x, teacher_targets)
        n_out = cache.table.shape[1] - (hints.teacher_width if hints is not None else 0)
        # mean(h_t^2) over the training rows: the hint term of predicting all zeros is 1.
        scale = (
            float(cache.table[:, n_out:].double().pow(2).mean().clamp_min(1e-12))
            if hints is not None
            else None
        )
        hinted = (
            HintedStudent(student, hints, derive_seed(context.seed, "distill", "hint_regressor"))
            if hints is not None
            else None
        )
        hint_terms: list[float] = []

        def loss_fn(out: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            target = cache(xb)  # (B, C) or (B, C + H_t) with hints
            loss = distillation_loss(
                out,
                target[:, :n_out],
                yb,
                kind=plan.kind,
                temperature=temperature,
                alpha=float(s.alpha),
            )
            if hinted is None or scale is None:
                return loss
            term = hint_loss(hinted.mapped(), target[:, n_out:], scale)
            hint_terms.append(float(term.detach()))
            return loss + float(s.hint_weight) * term

        cfg = replace(plan.config, max_seconds=max(context.remaining(), 0.01))
        try:
            # With hints, train_ optimises the student and the regressor together.
            result = train_(
                student if hinted is None else hinted,
                task,
                cfg,
                check=context.check_budget,
                loss_fn=loss_fn,
            )
        finally:
            if hinted is not None:
                student = hinted.release()  # the regressor is discarded
        per_epoch = max(1, math.ceil(len(plan.fit.x) / cfg.batch_size))
        hint_record: dict[str, Any] = {
            "weight": float(s.hint_weight),
            "used": hints is not None,
            "reason": None if hints is not None else pair,
        }
        # MLPs have no attention maps: soft targets (and hints) alone, and why.
        why_no_attention = (
            "attention_weight is 0"
            if s.attention_weight == 0
            else attention_pair(student, teachers[0], 0)
        )
        if not isinstance(why_no_attention, str):
            why_no_attention = "attention transfer runs on language-model tasks only"
        attention_record = {
            "weight": float(s.attention_weight),
            "used": False,
            "reason": why_no_attention,
        }
        if hints is not None:
            hint_record.update(
                teacher=_name(plan.teachers[0]),
                layers=hints.to_dict(),
                scale=scale,
                term_first_epoch=_mean(hint_terms[:per_epoch]),
                term_last_epoch=_mean(hint_terms[-per_epoch:]),
            )
        prefix = "ensemble" if plan.choice.ensemble else "teacher"
        origin = f"{prefix}:{'+'.join(_name(t) for t in plan.teachers)}"
        logger.info(
            "distilled %s from %s: %d epochs, T=%g, alpha=%g, hints %s",
            incumbent.model.name,
            origin,
            result.epochs_run,
            temperature,
            s.alpha,
            f"weight {s.hint_weight:g}" if hints is not None else f"off ({pair})",
        )
        return Candidate(
            module=student,
            params=plan.student_params,
            strategy=self.name,
            origin=origin,
            details=_details(plan, cache, cfg, result, hint_record, attention_record),
            cost=Cost(epochs=result.epochs_run, seconds=time.perf_counter() - t0),
        )

    # ------------------------------------------------------------------ language models
    def _apply_language_model(
        self, incumbent: LoadedModel, context: StrategyContext, plan: _Plan, t0: float
    ) -> Candidate:
        """Distil into a language-model student: per-token soft targets, and attention transfer
        where the pair allows it (formulas: the module docstring)."""
        task = context.task
        assert isinstance(task, LanguageModelTask)  # _plan chose LANGUAGE_MODEL for it
        s = plan.settings
        teachers = [t.module for t in plan.teachers]
        temperature, alpha = float(s.temperature), float(s.alpha)
        if plan.fresh:
            with torch_seeded(context.seed):
                student = task.build(plan.student_params)
        else:
            student = copy.deepcopy(incumbent.module)
        gpt2 = gpt2_of(student)
        if gpt2 is None:  # _plan refuses such an incumbent; a task may still build another kind
            raise StrategyError(
                f"distill fine-tunes a language model's GPT-2, but the student is a "
                f"{type(student).__name__}."
            )
        # Attention maps come from the best single teacher (an ensemble's first member), where
        # the structure of the pair allows them.
        pair = (
            attention_pair(student, teachers[0], task.context)
            if s.attention_weight > 0
            else "attention_weight is 0"
        )
        att = pair if isinstance(pair, AttentionPair) else None
        device = next(student.parameters()).device
        terms: list[float] = []

        def loss_fn(model: Any, windows: torch.Tensor) -> torch.Tensor:
            windows = windows.to(device)
            x, y = windows[:, :-1], windows[:, 1:]  # (B, T) inputs and next tokens
            with torch.no_grad(), eval_mode(teachers):
                if att is None:
                    outs = [m(x) for m in teachers]  # each (B, T, V)
                else:
                    first, t_att = logits_and_attentions(gpt2_of(teachers[0]), x)
                    t_maps = attention_maps(t_att)  # per teacher layer (B, T*T)
                    outs = [first, *(m(x) for m in teachers[1:])]
                probs = torch.stack([(o.float() / temperature).softmax(dim=-1) for o in outs])
                soft = probs.mean(dim=0)  # (B, T, V): an ensemble's mean
            if att is None:
                logits = model(input_ids=x).logits  # (B, T, V)
            else:
                logits, s_att = logits_and_attentions(model, x)
            v = logits.shape[-1]
            # Every token is one classification: (B, T, V) -> (B*T, V), mean over tokens.
            loss = distillation_loss(
                logits.reshape(-1, v).float(),
                soft.reshape(-1, v),
                y.reshape(-1),
                kind="classification",
                temperature=temperature,
                alpha=alpha,
            )
            if att is None:
                return loss
            term = attention_loss(attention_maps(s_att), t_maps, att)
            terms.append(float(term.detach()))
            return loss + float(s.attention_weight) * term

        train = dict(s.train)
        clip = train.get("clip_norm", 1.0)
        ft = FinetuneConfig(
            steps=int(s.steps),
            lr=float(
                train.get(
                    "lr", task.initial_training().get("lr", 3e-3) if plan.fresh else FINETUNE_LR
                )
            ),
            batch_size=int(train.get("batch_size", LM_BATCH_SIZE)),
            context=task.context,
            warmup_steps=max(1, int(s.steps) // 10),
            weight_decay=float(train.get("weight_decay", 0.0)),
            clip_norm=math.inf if clip is None else float(clip),
        )
        data = task.token_data()
        with eager_attention([student, teachers[0]] if att is not None else []):
            result = finetune_(
                gpt2,  # trained in place: the student's own GPT-2
                data,
                ft,
                seed=derive_seed(context.seed, "distill", "finetune"),
                max_seconds=max(context.remaining(), 0.01),
                check=context.check_budget,
                loss_fn=loss_fn,
            )
        student.eval()
        window = max(1, len(terms) // 10)
        attention_record: dict[str, Any] = {
            "weight": float(s.attention_weight),
            "used": att is not None,
            "reason": None if att is not None else pair,
        }
        if att is not None:
            attention_record.update(
                teacher=_name(plan.teachers[0]),
                layers=att.to_dict(),
                term_first_steps=_mean(terms[:window]),
                term_last_steps=_mean(terms[-window:]),
                steps_averaged=window,
            )
        hint_record = {
            "weight": float(s.hint_weight),
            "used": False,
            "reason": "hint_weight is 0"
            if s.hint_weight == 0
            else "FitNets hints match hidden layers of build_mlp MLPs; a language model's "
            "feature term is attention transfer (attention_weight)",
        }
        tokens_seen = result.steps * ft.batch_size * task.context
        prefix = "ensemble" if plan.choice.ensemble else "teacher"
        origin = f"{prefix}:{'+'.join(_name(t) for t in plan.teachers)}"
        logger.info(
            "distilled %s from %s: %d steps, T=%g, alpha=%g, attention transfer %s",
            incumbent.model.name,
            origin,
            result.steps,
            temperature,
            alpha,
            f"weight {s.attention_weight:g}" if att is not None else f"off ({pair})",
        )
        return Candidate(
            module=student,
            params=plan.student_params,
            strategy=self.name,
            origin=origin,
            details=_lm_details(plan, ft, result, hint_record, attention_record),
            cost=Cost(
                epochs=max(1, math.ceil(tokens_seen / max(1, len(data.train)))),
                seconds=time.perf_counter() - t0,
            ),
        )

    # ------------------------------------------------------------------ planning
    def _plan(self, incumbent: LoadedModel, context: StrategyContext) -> _Plan | str:
        """Settings, student and teacher, or the reason distillation cannot run."""
        settings = DistillConfig.from_params(context.params)
        cfg = self.config(context, settings)
        task = context.task
        kind = (
            LANGUAGE_MODEL if isinstance(task, LanguageModelTask) else getattr(task, "kind", None)
        )
        if kind not in (*KINDS, LANGUAGE_MODEL):
            return (
                f"distill needs a classification, regression or language-model task, but task "
                f"{task.name!r} has kind {kind!r}; build it with SupervisedTask.classification "
                "or .regression, or use a LanguageModelTask"
            )
        if not context.teachers:
            return NO_TEACHER

        student = self._student(incumbent, context, settings)
        if isinstance(student, str):
            return student
        student_params, fresh = student
        if kind == LANGUAGE_MODEL and gpt2_of(incumbent.module) is None and not fresh:
            return (
                "distill fine-tunes a language model's GPT-2, but the incumbent is a "
                f"{type(incumbent.module).__name__}; pass student_params to train a fresh one"
            )

        # The same seeded draw as train_'s first one: the student never fits these rows, and
        # validation and test stay the judge's alone.
        with torch_seeded(cfg.seed) as gen:
            fit, holdout = _holdout_split(task.splits().train, cfg.holdout_fraction, gen)
        if kind == LANGUAGE_MODEL:  # windows (H, T): a sample is enough to rank teachers
            holdout = Split(holdout.x[:LM_HOLDOUT_WINDOWS], holdout.y[:LM_HOLDOUT_WINDOWS])
        with eval_mode([incumbent.module]):
            inc_out = batched_outputs(incumbent.module, holdout.x)  # (H, C) or (H, K)
        usable: list[LoadedModel] = []
        outs: list[torch.Tensor] = []
        skipped: list[dict[str, str]] = []
        for t in context.teachers:
            why = self._unusable(t, task)
            if why is None:
                with eval_mode([t.module]):
                    out = batched_outputs(t.module, holdout.x)
                if out.shape != inc_out.shape:
                    why = f"outputs {tuple(out.shape)}, the incumbent {tuple(inc_out.shape)}"
                elif not bool(torch.isfinite(out).all()):
                    why = "NaN or infinite outputs on the holdout"
            if why is not None:
                logger.warning("teacher %s skipped: %s", _name(t), why)
                skipped.append({"teacher": _name(t), "reason": why})
                continue
            usable.append(t)
            outs.append(out)
        if not usable:
            listed = "; ".join(f"{s['teacher']}: {s['reason']}" for s in skipped)
            return f"no usable teacher ({listed})"
        choice, reason = choose_teacher(kind, holdout.y, inc_out, outs, [_name(t) for t in usable])
        if choice is None:
            return reason
        logger.debug("distill %s: %s", incumbent.model.name, reason)
        return _Plan(
            settings=settings,
            config=cfg,
            kind=kind,
            fit=fit,
            choice=choice,
            teachers=tuple(usable[i] for i in choice.members),
            student_params=student_params,
            fresh=fresh,
            skipped=skipped,
        )

    @staticmethod
    def _unusable(teacher: LoadedModel, task: Task) -> str | None:
        if teacher.task.name != task.name:
            return f"it belongs to task {teacher.task.name!r}, not {task.name!r}"
        if not isinstance(task, LanguageModelTask):
            return None
        gpt2 = gpt2_of(teacher.module)
        if gpt2 is not None and int(gpt2.config.n_positions) < task.context:
            return (
                f"it attends over {int(gpt2.config.n_positions)} positions, fewer than the "
                f"task's windows of {task.context} tokens"
            )
        return None

    @staticmethod
    def _student(
        incumbent: LoadedModel, context: StrategyContext, settings: DistillConfig
    ) -> tuple[dict[str, Any], bool] | str:
        """``(params, fresh)`` of the student, or why none can be made."""
        if settings.student_params is not None:
            return dict(settings.student_params), True
        if context.objective in COMPRESSION_OBJECTIVES:
            small = smaller_params(incumbent.version.params)
            why = None if small is None else _unbuildable(context.task, small)
            if small is None or why is not None:
                return (
                    f"cannot derive a smaller student from params {incumbent.version.params} "
                    f"for {context.objective}{f' ({why})' if why else ''}; pass "
                    "params={'student_params': {...}}"
                )
            return small, True
        if quantize.is_quantized(incumbent.module):
            return (
                "the incumbent is quantized and cannot be trained; target latency_ms or "
                "size_bytes (a smaller float student) or pass student_params"
            )
        return dict(incumbent.version.params), False


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _details(
    plan: _Plan,
    cache: TeacherTargets,
    cfg: TrainConfig,
    result: TrainResult,
    hints: dict[str, Any],
    attention: dict[str, Any],
) -> dict[str, Any]:
    """What a distillation did, for the candidate's record."""
    temperature = float(plan.settings.temperature)
    hint_term = " + hint_weight*||r(h_s)-h_t||^2/mean(h_t^2)" if hints["used"] else ""
    singles = {c["members"][0]: c for c in plan.choice.considered if len(c["members"]) == 1}
    return {
        "teachers": [
            {
                "model": t.model.name,
                "version": t.version.number,
                "holdout": {k: v for k, v in singles[_name(t)].items() if k != "members"},
            }
            for t in plan.teachers
        ],
        "ensemble": plan.choice.ensemble,
        "teacher_holdout": plan.choice.score,
        "incumbent_holdout": plan.choice.incumbent,
        "considered": plan.choice.considered,
        "skipped_teachers": plan.skipped,
        "kind": plan.kind,
        "loss": (
            "alpha*T^2*KL(softmax(z_t/T)||softmax(z_s/T)) + (1-alpha)*CE(y,z_s)"
            if plan.kind == "classification"
            else "alpha*MSE(student,teacher) + (1-alpha)*MSE(student,y)"
        )
        + hint_term,
        "hints": hints,
        "attention": attention,
        "temperature": temperature if plan.kind == "classification" else None,
        "alpha": float(plan.settings.alpha),
        "student": "fresh_init" if plan.fresh else "warm_start",
        "student_params": plan.student_params,
        "teacher_cache": {
            "precomputed_rows": len(cache),
            "hits": cache.hits,
            "misses": cache.misses,
        },
        "config": cfg.to_dict(),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped": result.stopped,
        "best_holdout_loss": result.best_holdout_loss,
    }


def _lm_details(
    plan: _Plan,
    ft: FinetuneConfig,
    result: FinetuneResult,
    hints: dict[str, Any],
    attention: dict[str, Any],
) -> dict[str, Any]:
    """What a language model's distillation did, for the candidate's record."""
    singles = {c["members"][0]: c for c in plan.choice.considered if len(c["members"]) == 1}
    attention_term = " + attention_weight*mean_layers||a_s-a_t||^2" if attention["used"] else ""
    return {
        "teachers": [
            {
                "model": t.model.name,
                "version": t.version.number,
                "holdout": {k: v for k, v in singles[_name(t)].items() if k != "members"},
            }
            for t in plan.teachers
        ],
        "ensemble": plan.choice.ensemble,
        "teacher_holdout": plan.choice.score,
        "incumbent_holdout": plan.choice.incumbent,
        "considered": plan.choice.considered,
        "skipped_teachers": plan.skipped,
        "kind": plan.kind,
        "loss": "per token: alpha*T^2*KL(softmax(z_t/T)||softmax(z_s/T)) + (1-alpha)*CE(y,z_s)"
        + attention_term,
        "hints": hints,
        "attention": attention,
        "temperature": float(plan.settings.temperature),
        "alpha": float(plan.settings.alpha),
        "student": "fresh_init" if plan.fresh else "warm_start",
        "student_params": plan.student_params,
        "finetune": ft.to_dict(),
        "ignored_settings": sorted(k for k in plan.settings.train if k in LM_IGNORED),
        "steps_run": result.steps,
        "stopped": result.stopped,
        "first_loss": result.losses[0] if result.losses else None,
        "last_loss": result.losses[-1] if result.losses else None,
    }
