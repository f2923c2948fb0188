"""``grow``: function-preserving growth of the incumbent, then training on (an architecture
strategy that keeps everything the incumbent learnt).

``evolve`` searches architectures by training fresh networks; ``grow`` starts from the trained
incumbent instead. Each child is a network morphism of it (Net2Net, Chen et al. 2016; Elsken et
al. 2017's hill climbing): ``widen`` multiplies every hidden layer's width by ``factor``
(:func:`~selfimprove.nn.mlp_growth.widen_mlp`), ``deepen`` repeats the last hidden layer as an
identity layer (:func:`~selfimprove.nn.mlp_growth.deepen_mlp`, ReLU models only). A child is
checked to compute the incumbent's function on training inputs (max |Δ| recorded, at most
``MAX_DRIFT``) before it trains on with an equal share of the epoch budget; the child with the
lowest loss on the training holdout (never validation, which the judge decides on) is the
candidate.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from selfimprove.errors import StrategyError
from selfimprove.measure.training import TRAIN_OVERRIDES, TrainConfig, train_
from selfimprove.nn.mlp import MLPStructure, parse_mlp
from selfimprove.nn.mlp_growth import can_deepen, deepen_mlp, widen_mlp
from selfimprove.nn.modules import TRANSFORM_KEYS
from selfimprove.objectives import EFFICIENCY_OBJECTIVES
from selfimprove.registry import LoadedModel
from selfimprove.seeding import derive_seed
from selfimprove.strategies._base import Candidate, Cost, Strategy, StrategyContext
from selfimprove.strategies._mlp_params import new_params, rebuild_problem
from selfimprove.strategies._params import TRAIN_PARAMS, Param, check_params

__all__ = ["GROWTHS", "GROW_PARAMS", "MAX_DRIFT", "GrowConfig", "GrowStrategy", "grown_widths"]

#: The morphisms ``grow`` may try, in the order it tries them.
GROWTHS = ("widen", "deepen")
#: Largest output change a grown child may show before training (else it is not a morphism).
MAX_DRIFT = 1e-5


#: ``grow``'s settings: its own and the training overrides of its children.
GROW_PARAMS: dict[str, Param] = {
    "growths": Param("choices", choices=GROWTHS, example="growths=widen"),
    "factor": Param("float", 1.0, 8.0, low_open=True, example="factor=2 (widths x 2)"),
    "max_width": Param("int", 1, 65_536, example="max_width=1024"),
    "max_depth": Param("int", 1, 64, example="max_depth=8"),
    **TRAIN_PARAMS,
}


@dataclass(frozen=True)
class GrowConfig:
    """Settings of one ``grow`` experiment, from ``context.params``.

    Attributes:
        growths: Morphisms to try (each a child trained on its share of the epochs).
        factor: ``widen`` multiplies each hidden width by this (in (1, 8]).
        max_width: No hidden layer is widened beyond this many units.
        max_depth: ``deepen`` adds no hidden layer beyond this many.
        train: :class:`TrainConfig` overrides for the children's training.
    """

    growths: tuple[str, ...] = GROWTHS
    factor: float = 2.0
    max_width: int = 1024
    max_depth: int = 8
    train: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        own = {k: v for k, v in asdict(self).items() if k != "train"}
        check_params("grow", GROW_PARAMS, {**own, **self.train})

    @classmethod
    def from_params(cls, params: Mapping[str, Any], max_epochs: int | None = None) -> GrowConfig:
        """Read and validate ``context.params`` against :data:`GROW_PARAMS`.

        Raises:
            ConfigError: An unknown key or a bad value (the message names it and the fix).
        """
        p = check_params("grow", GROW_PARAMS, params, max_epochs)
        return cls(
            growths=p.get("growths", GROWTHS),
            factor=p.get("factor", 2.0),
            max_width=p.get("max_width", 1024),
            max_depth=p.get("max_depth", 8),
            train={k: p[k] for k in TRAIN_OVERRIDES if k in p},
        )


def grown_widths(widths: tuple[int, ...], factor: float, max_width: int) -> tuple[int, ...]:
    """Hidden widths after ``widen``: each × ``factor`` (rounded), capped, never narrower."""
    return tuple(max(w, min(max_width, round(w * factor))) for w in widths)


@dataclass(frozen=True)
class _Child:
    growth: str
    widths: tuple[int, ...]
    module: nn.Module


class GrowStrategy(Strategy):
    """Grow the incumbent by function-preserving morphisms and train the children on.

    Settings in ``context.params`` (see :class:`GrowConfig`): ``growths`` (default both
    ``widen`` and ``deepen``; ``deepen`` is skipped for non-ReLU models), ``factor`` (default
    2), ``max_width`` (default 1024), and :class:`TrainConfig` overrides for the training.
    """

    name = "grow"
    family = "architecture"
    default_objective = None
    PARAMS = GROW_PARAMS

    def applicable(self, incumbent: LoadedModel, context: StrategyContext) -> str | None:
        """``None`` if growth can run, else why not.

        Raises:
            ConfigError: ``context.params`` holds an unknown or bad setting.
        """
        cfg = GrowConfig.from_params(context.params, context.budget.epochs)
        if context.objective in EFFICIENCY_OBJECTIVES:
            return (
                f"grow makes models larger, so it does not improve {context.objective} "
                "(use prune, distill or quantize)"
            )
        params = incumbent.version.params
        transforms = [k for k in TRANSFORM_KEYS if k in params]
        if transforms:
            return f"grow needs a float model; this version carries the transforms {transforms}"
        try:
            mlp = parse_mlp(incumbent.module, purpose="grow")
        except StrategyError as exc:
            return str(exc)
        children, refusals = self._children(incumbent, context, mlp, cfg)
        if children:
            return None
        if not refusals:
            return (
                f"no growth applies to hidden widths {list(mlp.widths)} ({mlp.activation}): "
                f"widths are at max_width={cfg.max_width} and deepening needs ReLU"
            )
        return "; ".join(refusals)

    def apply(self, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
        cfg = GrowConfig.from_params(context.params, context.budget.epochs)
        mlp = parse_mlp(incumbent.module)
        children, _ = self._children(incumbent, context, mlp, cfg)
        shares = _epoch_shares(context.budget.epochs, len(children))
        probe = context.task.splits().train.x[:64]  # training inputs only
        reports: list[dict[str, Any]] = []
        best: tuple[float, _Child] | None = None
        epochs_run = 0
        seconds = 0.0
        for (growth, widths), epochs in zip(children, shares, strict=True):
            context.check_budget()
            if epochs < 1:
                reports.append({"growth": growth, "skipped": "no epoch left in the budget"})
                continue
            child = _Child(
                growth, widths, self._grow(incumbent.module, mlp, growth, widths, context.seed)
            )
            drift = _max_drift(incumbent.module, child.module, probe)
            if not drift <= MAX_DRIFT:
                raise StrategyError(
                    f"{growth} changed the incumbent's outputs by {drift:.3g} before training "
                    f"(more than {MAX_DRIFT:g}): not a function-preserving growth"
                )
            cfg_train = self._train_config(context, cfg, epochs, growth)
            result = train_(child.module, context.task, cfg_train, check=context.check_budget)
            epochs_run += result.epochs_run
            seconds += result.seconds
            reports.append(
                {
                    "growth": growth,
                    "widths": list(widths),
                    "max_output_change_before_training": drift,
                    "epochs_run": result.epochs_run,
                    "best_holdout_loss": result.best_holdout_loss,
                    "stopped": result.stopped,
                }
            )
            if best is None or result.best_holdout_loss < best[0]:
                best = (result.best_holdout_loss, child)
        if best is None:
            raise StrategyError("grow: the epoch budget left no child any epoch to train")
        chosen = best[1]
        return Candidate(
            module=chosen.module,
            params=new_params(incumbent.version.params, mlp, chosen.widths),
            strategy=self.name,
            origin="warm_start",
            details={
                "config": asdict(cfg),
                "chosen": chosen.growth,
                "rule": "lowest loss on the training holdout after training on",
                "widths_before": list(mlp.widths),
                "widths_after": list(chosen.widths),
                "children": reports,
            },
            cost=Cost(epochs=epochs_run, seconds=seconds),
        )

    # ------------------------------------------------------------------ helpers
    @classmethod
    def _children(
        cls, incumbent: LoadedModel, context: StrategyContext, mlp: MLPStructure, cfg: GrowConfig
    ) -> tuple[list[tuple[str, tuple[int, ...]]], list[str]]:
        """The morphisms the task can rebuild (growth, hidden widths), and why others cannot.

        When the task refuses widening every layer (e.g. an autoencoder whose bottleneck must
        stay narrow), widening every layer but the narrowest is tried in its place.
        """
        usable: list[tuple[str, tuple[int, ...]]] = []
        refusals: list[str] = []
        for growth, options in cls._growths(mlp, cfg):
            for widths in options:
                grown = cls._grow(incumbent.module, mlp, growth, widths, context.seed)
                why = rebuild_problem(incumbent, context, mlp, widths, grown)
                if why is None:
                    usable.append((growth, widths))
                    break
                refusals.append(f"{growth} to {list(widths)}: {why}")
        return usable, refusals

    @staticmethod
    def _growths(mlp: MLPStructure, cfg: GrowConfig) -> list[tuple[str, list[tuple[int, ...]]]]:
        """The morphisms that apply, each with the hidden widths to try, in order."""
        out: list[tuple[str, list[tuple[int, ...]]]] = []
        for growth in cfg.growths:
            if growth == "widen":
                every = grown_widths(mlp.widths, cfg.factor, cfg.max_width)
                narrowest = mlp.widths.index(min(mlp.widths)) if mlp.depth else 0
                pairs = enumerate(zip(mlp.widths, every, strict=True))
                kept = tuple(w if i == narrowest else g for i, (w, g) in pairs)
                options = [w for w in (every, kept) if w != mlp.widths]
                if mlp.depth and options:
                    out.append((growth, list(dict.fromkeys(options))))
            elif can_deepen(mlp) is None and mlp.depth < cfg.max_depth:
                out.append((growth, [(*mlp.widths, mlp.widths[-1])]))
        return out

    @staticmethod
    def _grow(
        module: nn.Module, mlp: MLPStructure, growth: str, widths: tuple[int, ...], seed: int
    ) -> nn.Module:
        source = copy.deepcopy(module)  # the incumbent itself is never touched
        if growth == "widen":
            return widen_mlp(source, widths, seed=derive_seed(seed, "widen"))
        return deepen_mlp(source, mlp.depth - 1)

    @staticmethod
    def _train_config(
        context: StrategyContext, cfg: GrowConfig, epochs: int, growth: str
    ) -> TrainConfig:
        base = TrainConfig(
            epochs=epochs,
            max_seconds=max(context.remaining(), 0.01),
            seed=derive_seed(context.seed, growth),
        )
        return replace(base, **cfg.train)


def _epoch_shares(total: int, parts: int) -> list[int]:
    """``total`` epochs over ``parts`` children, as evenly as possible, earlier ones first."""
    base, extra = divmod(total, max(parts, 1))
    return [base + (1 if i < extra else 0) for i in range(parts)]


@torch.no_grad()
def _max_drift(parent: nn.Module, child: nn.Module, x: torch.Tensor) -> float:
    """Largest absolute output difference between two models in eval mode (copies are used)."""
    a, b = copy.deepcopy(parent).eval(), copy.deepcopy(child).eval()
    return float((a(x) - b(x)).abs().max())
