"""``quantize``: dynamic int8 quantization of a copy's Linear layers, with the faster engine.

Every available engine of :mod:`selfimprove.nn.quantize` quantizes its own copy of the
incumbent; each copy is timed against the float incumbent (one thread, warm-up, repeats
interleaved across the models, medians) at batch 1 and at a serving batch, on inputs drawn
(seeded) from the **training** split: validation and test are only for the judge. The engine
with the lowest median batch-1 latency wins (batch 1 is what the judge's ``latency_ms``
measures, as objective and as guard); ties go to the lower serving-batch median. All timings
(medians and every timed repeat), the speed-ups over float, the winner and the engines that
could not run (with the exact reason) go into the candidate's details.

Int8 is not always faster: on small layers at batch 1 the cost of quantizing activations can
exceed the arithmetic saved, and the judge's latency guard then rejects the candidate. The
timings recorded here say so before the judge does.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

import selfimprove.nn.quantize as quantize
from selfimprove.config import JudgeConfig
from selfimprove.errors import StrategyError
from selfimprove.nn.runtime import single_thread
from selfimprove.registry import LoadedModel
from selfimprove.strategies._base import Candidate, Cost, Strategy, StrategyContext
from selfimprove.strategies._params import Param, check_params
from selfimprove.tasks import Task

__all__ = [
    "QUANTIZE_PARAMS",
    "QuantizeConfig",
    "QuantizeStrategy",
    "Timing",
    "time_interleaved",
    "training_inputs",
]

logger = logging.getLogger(__name__)

#: Objectives quantization can improve.
OBJECTIVES = ("latency_ms", "size_bytes")
#: Fewest timed repeats, whatever the budget says (a median of fewer means little).
MIN_REPEATS = 3
#: Share of the remaining budget the timing may plan to use.
TIMING_SHARE = 0.5

SELECTION_RULE = (
    "lowest median batch-1 latency (what the judge's latency_ms measures), "
    "ties by the serving-batch median"
)


#: ``quantize``'s settings (see :class:`QuantizeConfig`).
QUANTIZE_PARAMS: dict[str, Param] = {
    "engines": Param("choices", choices=quantize.ENGINES, example=f"engines={quantize.ENGINES[0]}"),
    "repeats": Param("int", MIN_REPEATS, 10_000, example="repeats=30"),
    "warmup": Param("int", 0, 1000, example="warmup=3"),
    "serving_batch": Param("int", 1, 65_536, example="serving_batch=64"),
}


@dataclass(frozen=True)
class QuantizeConfig:
    """Settings of one ``quantize`` experiment (from ``context.params``).

    Attributes:
        engines: Engines to try, in order (default: all of :data:`quantize.ENGINES`).
        repeats: Timed repeats per model and batch size (fewer if the budget is short).
        warmup: Untimed calls per model and batch size before timing.
        serving_batch: The batch size a served model would see, timed beside batch 1.
    """

    engines: tuple[str, ...] = quantize.ENGINES
    repeats: int = JudgeConfig().latency_repeats
    warmup: int = 3
    serving_batch: int = JudgeConfig().serving_batch

    def __post_init__(self) -> None:
        check_params("quantize", QUANTIZE_PARAMS, asdict(self))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> QuantizeConfig:
        """Settings from a strategy's params, checked against :data:`QUANTIZE_PARAMS`.

        Raises:
            ConfigError: An unknown key, a setting out of range or an unknown engine.
        """
        return cls(**check_params("quantize", QUANTIZE_PARAMS, params))


@dataclass(frozen=True)
class Timing:
    """Interleaved timings of several models (milliseconds per call)."""

    batch1_ms: dict[str, list[float]]
    serving_ms: dict[str, list[float]]
    repeats: int

    def median(self, name: str) -> tuple[float, float]:
        """Median batch-1 and serving-batch milliseconds of model ``name``."""
        return float(np.median(self.batch1_ms[name])), float(np.median(self.serving_ms[name]))


def training_inputs(task: Task, batch: int, gen: torch.Generator) -> torch.Tensor:
    """``batch`` inputs drawn from the task's **training** split (repeated only if the split is
    smaller), for timing.

    Args:
        task: The task.
        batch: Number of inputs.
        gen: Seeded generator of the draw.

    Returns:
        A tensor of ``batch`` inputs.
    """
    x = task.splits().train.x
    reps = -(-batch // len(x))
    idx = torch.cat([torch.randperm(len(x), generator=gen) for _ in range(reps)])[:batch]
    return x[idx].contiguous()


@torch.inference_mode()
def time_interleaved(
    modules: Mapping[str, nn.Module],
    x1: torch.Tensor,
    xs: torch.Tensor,
    *,
    repeats: int,
    warmup: int,
    seconds: float | None = None,
    check: Callable[[], None] | None = None,
) -> Timing:
    """Time ``modules`` side by side: one thread, warm-up, repeats interleaved across them.

    Args:
        modules: Models by name (each is put in eval mode; pass copies you own).
        x1: A batch-1 input.
        xs: A serving-batch input.
        repeats: Timed repeats wanted per model and batch size.
        warmup: Untimed calls per model and batch size first.
        seconds: Time the timed repeats may take; the first repeat gives the cost of one, and
            the count is cut to fit (never below :data:`MIN_REPEATS`). ``None``: no limit.
        check: Called once per repeat (e.g. :meth:`StrategyContext.check_budget`).

    Returns:
        Per-model lists of milliseconds at batch 1 and at the serving batch.
    """
    for m in modules.values():
        m.eval()
    b1: dict[str, list[float]] = {name: [] for name in modules}
    bs: dict[str, list[float]] = {name: [] for name in modules}
    planned = repeats
    with single_thread():
        for m in modules.values():
            for _ in range(warmup):
                m(x1)
                m(xs)
        started = time.perf_counter()
        done = 0
        while done < planned:
            for name, m in modules.items():
                t0 = time.perf_counter()
                m(x1)
                t1 = time.perf_counter()
                m(xs)
                t2 = time.perf_counter()
                b1[name].append((t1 - t0) * 1e3)
                bs[name].append((t2 - t1) * 1e3)
            done += 1
            if done == 1 and seconds is not None:
                per_round = max(time.perf_counter() - started, 1e-9)
                planned = min(repeats, max(MIN_REPEATS, math.floor(seconds / per_round)))
            if check is not None:
                check()
    return Timing(b1, bs, done)


class QuantizeStrategy(Strategy):
    """Dynamic int8 quantization of the Linear layers of a copy of the incumbent.

    Settings in ``context.params`` (see :class:`QuantizeConfig`): ``engines``, ``repeats``,
    ``warmup``, ``serving_batch``. No training: the candidate costs 0 epochs. Runs on the
    CPU whatever the configured device: both engines' int8 kernels are CPU kernels.
    """

    name = "quantize"
    family = "optimisation"
    default_objective = "size_bytes"
    cpu_only = True
    PARAMS = QUANTIZE_PARAMS

    def applicable(self, incumbent: LoadedModel, context: StrategyContext) -> str | None:
        """``None`` for a latency or size target of a float model with a Linear layer.

        Raises:
            ConfigError: A bad setting in ``context.params`` (refused before anything runs).
        """
        self.check_params(context.params, context.budget)
        if context.objective not in OBJECTIVES:
            return (
                f"quantize improves {' or '.join(OBJECTIVES)}, not {context.objective}; "
                "it keeps accuracy at best"
            )
        spec = incumbent.version.params.get("quantization")
        if spec or quantize.is_quantized(incumbent.module):
            return f"{incumbent.model.name} v{incumbent.version.number} is already quantized" + (
                f" ({spec})" if spec else ""
            )
        if not any(isinstance(m, nn.Linear) for m in incumbent.module.modules()):
            return "the model has no nn.Linear layer to quantize"
        return None

    def apply(self, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
        """Quantize a copy with each available engine and keep the faster one.

        Raises:
            StrategyError: Bad settings, or no engine could quantize the model.
        """
        t0 = time.perf_counter()
        settings = QuantizeConfig.from_params(context.params)
        quantized, unavailable = self._quantize_all(incumbent.module, settings, context)
        if not quantized:
            raise StrategyError(
                f"no quantization engine could quantize {incumbent.model.name}: {unavailable}."
            )

        float_copy = copy.deepcopy(incumbent.module).eval()  # the incumbent is never touched
        gen = torch.Generator().manual_seed(context.seed)
        x1 = training_inputs(context.task, 1, gen)
        xs = training_inputs(context.task, settings.serving_batch, gen)
        timing = time_interleaved(
            {"float": float_copy, **quantized},
            x1,
            xs,
            repeats=settings.repeats,
            warmup=settings.warmup,
            seconds=max(context.remaining(), 0.0) * TIMING_SHARE,
            check=context.check_budget,
        )
        latency: dict[str, dict[str, float]] = {}
        for name in ("float", *quantized):
            b1, srv = timing.median(name)
            latency[name] = {"batch1": b1, "serving": srv}
        speedup = {
            engine: {
                "batch1": latency["float"]["batch1"] / latency[engine]["batch1"],
                "serving": latency["float"]["serving"] / latency[engine]["serving"],
            }
            for engine in quantized
        }
        winner = min(quantized, key=lambda e: (latency[e]["batch1"], latency[e]["serving"]))
        for engine in quantized:
            logger.info(
                "quantize %s with %s: float/int8 latency %.2fx at batch 1, %.2fx at batch %d",
                incumbent.model.name,
                engine,
                speedup[engine]["batch1"],
                speedup[engine]["serving"],
                settings.serving_batch,
            )
        spec = {"scheme": quantize.SCHEME, "engine": winner}
        details: dict[str, Any] = {
            "scheme": quantize.SCHEME,
            "engine": winner,
            "selection": SELECTION_RULE,
            "engines_tried": list(settings.engines),
            "engines_timed": list(quantized),
            "engines_unavailable": unavailable,
            "latency_ms": latency,
            "speedup": speedup,
            "latency_samples_ms": {
                name: {"batch1": timing.batch1_ms[name], "serving": timing.serving_ms[name]}
                for name in latency
            },
            "timing": {
                "inputs": "training split",
                "threads": 1,
                "warmup": settings.warmup,
                "repeats": timing.repeats,
                "repeats_wanted": settings.repeats,
                "serving_batch": settings.serving_batch,
            },
        }
        if "torchao" in quantized:
            details["torchao"] = {
                "version": _torchao_version(),
                "config": "Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)",
            }
        return Candidate(
            module=quantized[winner],
            params={**dict(incumbent.version.params), "quantization": spec},
            strategy=self.name,
            origin="warm_start",
            details=details,
            cost=Cost(epochs=0, seconds=time.perf_counter() - t0),
        )

    @staticmethod
    def _quantize_all(
        module: nn.Module, settings: QuantizeConfig, context: StrategyContext
    ) -> tuple[dict[str, nn.Module], dict[str, str]]:
        """A quantized copy per engine that can run, and the reason for each that cannot."""
        quantized: dict[str, nn.Module] = {}
        unavailable: dict[str, str] = {}
        for engine in settings.engines:
            reason = quantize.engine_unavailable(engine)
            if reason is None:
                try:
                    q = quantize.quantize_module(
                        module, {"scheme": quantize.SCHEME, "engine": engine}
                    )
                except StrategyError as exc:
                    reason = str(exc)
                else:
                    if quantize.is_quantized(q):
                        quantized[engine] = q
                    else:
                        reason = f"engine {engine!r} left every Linear layer of this model in float"
            if reason is not None:
                unavailable[engine] = reason
                logger.info("quantize: engine %s not used: %s", engine, reason)
            context.check_budget()
        return quantized, unavailable


def _torchao_version() -> str:
    try:
        import torchao
    except Exception:  # pragma: no cover - it quantized a moment ago
        return "unknown"
    return str(getattr(torchao, "__version__", "unknown"))
