"""One experiment's strategy run as plain data: what travels to a worker and what comes back.

The driver plans an experiment and records it as running; the strategy's part (the only
expensive one) is described by an :class:`ExperimentWork` — the task by reference, the
incumbent (and any teachers) as architecture params plus safetensors bytes with their sha256,
the budget, the seed, the settings — and run by :func:`run_work` wherever the executor puts
it: in this process, or on a Ray worker on another machine. The candidate comes back the same
way (:class:`WorkResult`: params, safetensors bytes, sha256, cost, details, or the failure's
reason), and only the driver judges and commits it. Every executor, local ones included, goes
through these bytes, so the module the judge measures is exactly the one the registry stores
and the same seed gives the same decisions wherever the work ran.

Nothing here touches the store: a worker needs no access to the ledger.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from selfimprove._faults import crash_point
from selfimprove.checkpoints import sha256_hex, state_from_bytes
from selfimprove.errors import BudgetExceededError, CheckpointError
from selfimprove.nn.device import CPU, cpu_only, resolve_device
from selfimprove.nn.modules import build_module, load_state_, state_to_bytes
from selfimprove.registry import LoadedModel
from selfimprove.store import ModelRecord, VersionRecord
from selfimprove.strategies import Budget, Candidate, Cost, Strategy, StrategyContext
from selfimprove.tasks import BUILTIN_TASKS, Task, device_of, on_device, resolve_task

__all__ = [
    "ExperimentWork",
    "ModelBytes",
    "TaskRef",
    "WorkResult",
    "candidate_from",
    "placed",
    "run_strategy",
    "run_work",
    "work_for",
]


@dataclass(frozen=True)
class TaskRef:
    """A task by name where any process can resolve it (built-in, ``"module:attr"``), else the
    task object itself (one registered only in the driver's process)."""

    name: str
    task: Task | None = None

    @classmethod
    def of(cls, task: Task) -> TaskRef:
        portable = task.name in BUILTIN_TASKS or ":" in task.name
        return cls(task.name, None if portable else task)

    def resolve(self) -> Task:
        return self.task if self.task is not None else resolve_task(self.name)


@dataclass(frozen=True)
class ModelBytes:
    """A model version as it travels: its records, params and checksummed weights."""

    model: ModelRecord
    version: VersionRecord
    params: dict[str, Any]
    state: bytes
    sha256: str

    @classmethod
    def of(cls, loaded: LoadedModel) -> ModelBytes:
        data = state_to_bytes(loaded.module)
        params = dict(loaded.version.params)
        return cls(loaded.model, loaded.version, params, data, sha256_hex(data))

    def load(self, task: Task) -> LoadedModel:
        """The version rebuilt on ``task`` (checksum verified first).

        Raises:
            CheckpointError: The bytes do not match their checksum or their params.
        """
        what = f"{self.model.name} v{self.version.number} (as sent to the worker)"
        return LoadedModel(
            self.model,
            self.version,
            task,
            _module(task, self.params, self.state, self.sha256, what),
        )


@dataclass(frozen=True)
class ExperimentWork:
    """Everything a worker needs to run one experiment's strategy.

    Attributes:
        experiment_id: The running experiment this work belongs to (for logs and reasons).
        task: The model's task.
        strategy: The strategy (stateless; sent by reference to its class).
        incumbent: The incumbent the candidate starts from.
        teachers: Models that may teach (distillation).
        objective: The targeted objective's name.
        budget: Epochs and seconds; the seconds count from when the worker starts.
        seed: The experiment's seed (a retried work gives the same candidate).
        params: The strategy's settings.
        warm_starts: Settings that won earlier (searching strategies).
        threads: Torch intra-op threads to train with (the config's ``threads``), so that
            rounding, and with it every decision, does not depend on which machine ran it.
        device: Where the strategy trains (the config's ``device``: ``auto``, ``cpu``,
            ``cuda``, ``cuda:N``), resolved on the worker; the bytes that travel are CPU
            tensors either way.
    """

    experiment_id: int
    task: TaskRef
    strategy: Strategy
    incumbent: ModelBytes
    teachers: tuple[ModelBytes, ...]
    objective: str
    budget: Budget
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    warm_starts: tuple[dict[str, Any], ...] = ()
    threads: int = 1
    device: str = "cpu"


@dataclass(frozen=True)
class WorkResult:
    """What came back: a candidate as params and checksummed bytes, or why there is none.

    Attributes:
        params: Architecture params that rebuild the candidate.
        state: Its safetensors bytes; ``sha256`` their checksum.
        strategy, origin, details, cost: As in :class:`~selfimprove.strategies.Candidate`.
        error: ``"<ExceptionType>: <message>"`` when the strategy failed (nothing else is set).
        seconds: Wall time of the strategy's run on the worker.
        worker: ``host:pid`` of the process that ran it.
    """

    params: dict[str, Any] = field(default_factory=dict)
    state: bytes = b""
    sha256: str = ""
    strategy: str = ""
    origin: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    cost: Cost = field(default_factory=lambda: Cost(0, 0.0))
    error: str | None = None
    seconds: float = 0.0
    worker: str = ""


def work_for(
    experiment_id: int,
    strategy: Strategy,
    incumbent: LoadedModel,
    context: StrategyContext,
    threads: int = 1,
    device: str = "cpu",
) -> ExperimentWork:
    """The work description of a planned experiment (``context`` from the driver's plan;
    ``threads``: the torch threads it trains with; ``device``: where, as the user named it)."""
    return ExperimentWork(
        experiment_id=experiment_id,
        task=TaskRef.of(context.task),
        strategy=strategy,
        incumbent=ModelBytes.of(incumbent),
        teachers=tuple(ModelBytes.of(t) for t in context.teachers),
        objective=context.objective,
        budget=context.budget,
        seed=context.seed,
        params=dict(context.params),
        warm_starts=context.warm_starts,
        threads=threads,
        device=device,
    )


def run_work(work: ExperimentWork) -> WorkResult:
    """Run the strategy of ``work`` (in any process) and return its candidate as bytes.

    A failure of the strategy (an exception, a budget overrun, NaN) comes back as
    :attr:`WorkResult.error`; it is never raised, so one failed experiment does not stop the
    others of its cycle. Torch's intra-op threads are set to ``work.threads`` for the run and
    restored after.
    """
    worker = f"{socket.gethostname()}:{os.getpid()}"
    before = torch.get_num_threads()
    torch.set_num_threads(work.threads)
    t0 = time.perf_counter()
    try:
        crash_point("work_running")
        cand = _run(work)
        data = state_to_bytes(cand.module.to(CPU))  # checkpoints carry no device
        return WorkResult(
            params=dict(cand.params),
            state=data,
            sha256=sha256_hex(data),
            strategy=cand.strategy,
            origin=cand.origin,
            details=cand.details,
            cost=cand.cost,
            seconds=time.perf_counter() - t0,
            worker=worker,
        )
    except Exception as exc:  # any strategy failure is a failed experiment
        return WorkResult(
            error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - t0, worker=worker
        )
    finally:
        torch.set_num_threads(before)


def run_strategy(strategy: Strategy, incumbent: LoadedModel, context: StrategyContext) -> Candidate:
    """The strategy's candidate, built from a copy of the incumbent within the budget.

    Raises:
        BudgetExceededError: It ran past its seconds (hard limit) or its epochs.
    """
    budget = context.budget
    t0 = time.perf_counter()
    cand = strategy.apply(incumbent, context)
    wall = time.perf_counter() - t0
    if wall > budget.hard_limit_s:
        raise BudgetExceededError(f"ran {wall:.1f} s, over its budget of {budget.seconds:g} s")
    if cand.cost.epochs > budget.epochs:
        raise BudgetExceededError(
            f"ran {cand.cost.epochs} epochs, over its budget of {budget.epochs}"
        )
    return cand


def _run(work: ExperimentWork) -> Candidate:
    task = work.task.resolve()
    device = CPU if work.strategy.cpu_only else resolve_device(work.device)
    view = on_device(task, device)
    context = StrategyContext(
        task=view,
        objective=work.objective,
        budget=work.budget,
        seed=work.seed,
        teachers=tuple(placed(t.load(task), view) for t in work.teachers),
        params=dict(work.params),
        warm_starts=work.warm_starts,
        device=device,
    )
    return run_strategy(work.strategy, placed(work.incumbent.load(task), view), context)


def placed(loaded: LoadedModel, view: Task) -> LoadedModel:
    """``loaded`` on the device of the task view ``view`` (loaded on the CPU, then moved;
    a CPU-only module, such as an int8-quantized one, stays on the CPU)."""
    module = loaded.module if cpu_only(loaded.module) else loaded.module.to(device_of(view))
    return LoadedModel(loaded.model, loaded.version, view, module)


def candidate_from(result: WorkResult, task: Task) -> Candidate:
    """The candidate of a successful ``result``, rebuilt on ``task`` (checksum verified).

    Raises:
        CheckpointError: The bytes do not match their checksum or their params.
    """
    module = _module(task, result.params, result.state, result.sha256, "the candidate")
    return Candidate(
        module=module,
        params=dict(result.params),
        strategy=result.strategy,
        origin=result.origin,
        details=dict(result.details),
        cost=result.cost,
    )


def _module(
    task: Task, params: Mapping[str, Any], data: bytes, sha256: str, what: str
) -> nn.Module:
    if sha256_hex(data) != sha256:
        raise CheckpointError(f"{what}: its bytes do not match their sha256 (damaged in transit)")
    module = build_module(task, params)
    load_state_(module, state_from_bytes(data, source=what), what=what)
    module.eval()
    return module
