"""`SelfImprover`: the front door — a home folder's models and the loop that improves them.

::

    si = SelfImprover(home=".selfimprove")
    si.register_model("wine_mlp", task, module, params)   # give the task a search_space()
    si.run(cycles=6)        # the planned loop: bandit, hormones, triggers, every strategy

``run`` is the same planned cycle as ``selfimprove run`` (:class:`~selfimprove.loop.cycle.
ImprovementCycle`): weaknesses found on validation, a strategy chosen for each (train, tune,
evolve, distill, prune, quantize, ...), every candidate judged. ``run(planned=False)`` is the
plain loop that only trains models below their target; ``improve`` runs one chosen strategy.
"""

from __future__ import annotations

import asyncio
import csv
import datetime
import io
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from torch import nn

from selfimprove.config import (
    EXPORT_FORMATS,
    MAX_CYCLES,
    MAX_KEEP,
    MAX_RETENTION_DAYS,
    SelfImprovementConfig,
)
from selfimprove.errors import ConfigError
from selfimprove.loop.cycle import ImprovementCycle
from selfimprove.loop.experiment import ExperimentOutcome, ImprovementLoop, ProgressCallback
from selfimprove.loop.home import open_store
from selfimprove.loop.integrity import check_version_files
from selfimprove.measure.evaluation import Evaluator
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.nn.device import CPU, resolve_device
from selfimprove.registry import LoadedModel, Registry
from selfimprove.seeding import derive_seed, torch_seeded
from selfimprove.store import (
    SCHEMA_VERSION,
    ExperimentRecord,
    Store,
    VersionRecord,
    clean_json,
    utcnow,
)
from selfimprove.strategies import Budget, get_strategy
from selfimprove.tasks import BUILTIN_TASKS, Task, on_device, resolve_task

__all__ = [
    "CSV_TABLES",
    "EXPORT_FORMATS",
    "MAX_CYCLES",
    "MAX_KEEP",
    "MAX_RETENTION_DAYS",
    "SelfImprover",
    "run_sync",
]


logger = logging.getLogger(__name__)

T = TypeVar("T")


def run_sync(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine from synchronous code (scripts, notebooks, the CLI).

    Raises:
        ConfigError: Called inside a running event loop (await the async method instead).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_call(fn))
    raise ConfigError(
        "a sync wrapper was called inside a running event loop; await the async method instead."
    )


async def _call(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


class SelfImprover:
    """A home folder's models and the loop that improves them.

    Args:
        home: Home folder (default ``$SELFIMPROVE_HOME`` or ``./.selfimprove``).
        db_url: SQLAlchemy URL of the store (default ``$SELFIMPROVE_DB`` or a SQLite file in
            the home folder).
        config: Loop settings.
        seed: Base seed of every experiment.
        create: Create the home and its store when missing (``False``: a missing home is an
            error, nothing is created).
        read_only: Only read: nothing is created or written in the home; a home that may not
            be written to is read from a temporary copy of its database (see
            :mod:`selfimprove.loop.home`).

    Raises:
        ConfigError: An unusable home path, or no home there when it may not be created.
        SchemaVersionError: The store was written by a newer schema.
        StoreError: The database cannot be opened.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        db_url: str | None = None,
        config: SelfImprovementConfig | None = None,
        seed: int = 0,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        self.config = config or SelfImprovementConfig()
        #: Where models run (the config's ``device``, resolved before anything is opened, so
        #: an absent device writes nothing).
        self.device = resolve_device(self.config.device)
        self._opened = open_store(home, db_url, create=create, read_only=read_only)
        self.home = self._opened.home
        self.seed = seed
        self.store: Store = self._opened.store
        kept = self.config.backups_kept if self.config.model_backup_enabled else 0
        self.registry = Registry(self.store, self.home, backups_kept=kept)
        self.evaluator = Evaluator(self.config.judge(), self.device)
        self.loop = ImprovementLoop(
            self.store, self.registry, self.config, seed=seed, evaluator=self.evaluator
        )
        self._cycle: ImprovementCycle | None = None

    @property
    def cycle(self) -> ImprovementCycle:
        """The planned cycle and its brain (restored from the store; built on first use)."""
        if self._cycle is None:
            self._cycle = ImprovementCycle(self, self.loop, self.config, seed=self.seed)
        return self._cycle

    def use_cycle(self, cycle: ImprovementCycle) -> None:
        """Run ``cycle`` (e.g. one with a given brain or executor) from now on."""
        if self._cycle is not None and self._cycle is not cycle:
            self._cycle.close()
        self._cycle = cycle

    def close(self) -> None:
        """Release the cycle's workers and the store."""
        if self._cycle is not None:
            self._cycle.close()
        self._opened.close()

    def __enter__(self) -> SelfImprover:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ models
    def register_model(
        self,
        name: str,
        task: Task | str,
        module: nn.Module,
        params: dict[str, Any],
        *,
        description: str = "",
    ) -> VersionRecord:
        """Register your own model; it becomes version 1 and the incumbent.

        ``params`` must rebuild ``module`` through ``task.build(params)``.
        """
        task_obj = task if isinstance(task, Task) else resolve_task(task)
        (ev,) = self.evaluator.evaluate([module], task_obj, with_latency=False)
        return self.registry.register(
            name, task, module, params, description=description, metrics=ev.summary()
        )

    def ensure_builtin_models(self) -> list[str]:
        """Register the built-in models (deliberately weak first incumbents) if absent.

        Returns:
            Names of the models registered now.
        """
        added = []
        for name in BUILTIN_TASKS:
            if self.store.find_model(name) is not None:
                continue
            task = resolve_task(name)
            params = task.initial_params()
            seed = derive_seed(self.seed, "initial", name)
            with torch_seeded(seed):
                module = task.build(params)  # initialised on the CPU: the same on any device
            train_(
                module.to(self.device),
                on_device(task, self.device),
                TrainConfig(seed=seed, **task.initial_training()),
            )
            module.to(CPU)
            (ev,) = self.evaluator.evaluate([module], task, with_latency=False)
            try:
                self.registry.register(
                    name,
                    name,
                    module,
                    params,
                    description=f"built-in model of task {name} (deliberately weak start)",
                    origin="fresh_init",
                    metrics=ev.summary(),
                )
            except ConfigError:
                existing = self.store.find_model(name)
                if existing is None or existing.task != name:
                    raise
                logger.info("%s was registered by another process meanwhile", name)
                continue
            added.append(name)
        return added

    def load(self, name: str, version: int | None = None) -> LoadedModel:
        """Load a version of a model (the incumbent by default), checksum verified."""
        return self.registry.load(name, version)

    def rollback(self, name: str, to: int | None = None) -> VersionRecord:
        """Restore the previous incumbent (or version ``to``)."""
        return self.registry.rollback(name, to)

    def prune(
        self,
        *,
        older_than_days: float | None = None,
        keep_measurements: int | None = None,
        keep_rejected: int | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """The retention policy, run now: delete measurements taken more than
        ``older_than_days`` ago and / or beyond the newest ``keep_measurements`` of each
        capability and split (the newest always stays), and the weights of rejected candidates
        judged more than ``older_than_days`` ago and / or beyond the newest ``keep_rejected``
        of each model. Never touched: incumbents, backups (rollback targets), candidates being
        judged, experiments, versions' records and manifests, events — the audit trail.

        Returns:
            ``{"measurements": n, "checkpoints": [{"model", "version", "bytes"}...],
            "bytes_freed": n, "dry_run": bool}``; an event ``retention`` records what was done.

        Raises:
            ConfigError: Nothing to prune by, or a number out of range (nothing changes).
        """
        if older_than_days is None and keep_measurements is None and keep_rejected is None:
            raise ConfigError(
                "prune needs older_than_days, keep_measurements or keep_rejected "
                "(e.g. --older-than-days 30)."
            )
        if older_than_days is not None and not 0 <= older_than_days <= MAX_RETENTION_DAYS:
            raise ConfigError(
                f"older_than_days must be in [0, {MAX_RETENTION_DAYS}], got {older_than_days}."
            )
        for name, n, low in (
            ("keep_measurements", keep_measurements, 1),  # the newest value always stays
            ("keep_rejected", keep_rejected, 0),
        ):
            if n is not None and not low <= n <= MAX_KEEP:
                raise ConfigError(f"{name} must be in [{low}, {MAX_KEEP}], got {n}.")
        before = (
            utcnow() - datetime.timedelta(days=older_than_days)
            if older_than_days is not None
            else None
        )
        measurements = 0
        if before is not None or keep_measurements is not None:
            measurements = self.store.prune_measurements(
                before=before, keep=keep_measurements, dry_run=dry_run
            )
        pruned: list[tuple[str, int, int]] = []
        if before is not None or keep_rejected is not None:
            pruned = self.registry.prune_rejected(
                before=before, keep=keep_rejected, dry_run=dry_run
            )
        report = {
            "measurements": measurements,
            "checkpoints": [{"model": m, "version": v, "bytes": b} for m, v, b in pruned],
            "bytes_freed": sum(b for _, _, b in pruned),
            "dry_run": dry_run,
        }
        if not dry_run:
            self.store.add_event(
                "retention",
                f"pruned {measurements} measurement(s) and the weights of {len(pruned)} "
                "rejected version(s)",
                payload={
                    "older_than_days": older_than_days,
                    "keep_measurements": keep_measurements,
                    "keep_rejected": keep_rejected,
                    "measurements": measurements,
                    "bytes_freed": report["bytes_freed"],
                },
            )
        return report

    # ------------------------------------------------------------------ loop
    def run(
        self,
        cycles: int = 1,
        *,
        models: list[str] | None = None,
        progress: ProgressCallback | None = None,
        planned: bool = True,
    ) -> list[ExperimentOutcome]:
        """Run improvement cycles.

        Args:
            cycles: How many (1 to 10,000).
            models: Only these models (default: every registered one).
            progress: Called as ``progress(event, data)``. The planned loop: ``("planned",
                {"cycle", "tasks", "budget"})`` when a cycle has chosen its experiments,
                ``("experiment", {"cycle", "outcome"})`` as each is judged, ``("cycle",
                {"cycle", "outcomes"})`` after each cycle. The plain loop: ``("start" |
                "done", {"cycle", "model", ...})`` per model. An exception it raises inside a
                cycle is logged and the cycle goes on. (Progress is also logged at ``INFO``.)
            planned: The planned loop (default; see :class:`ImprovementCycle`). ``False``: the
                plain loop, which only trains the models below their target.

        Returns:
            Every outcome, in order (a skipped model's too).

        Raises:
            ConfigError: ``cycles`` out of range.
            NotFoundError: An unknown model name (nothing has run).
        """
        if not 1 <= cycles <= MAX_CYCLES:
            raise ConfigError(f"cycles must be between 1 and {MAX_CYCLES}, but got {cycles=}.")
        if not planned:
            return self.loop.run(cycles, models=models, progress=progress)
        for name in models or ():
            self.store.get_model(name)  # unknown names fail before anything runs
        outcomes: list[ExperimentOutcome] = []
        before, self.cycle.progress = self.cycle.progress, progress or self.cycle.progress
        try:
            for _ in range(cycles):
                metrics = run_sync(lambda: self.cycle.run(models))
                outcomes.extend(self.cycle.last_outcomes)
                self.cycle.report(
                    "cycle",
                    {"cycle": metrics.iteration, "outcomes": list(self.cycle.last_outcomes)},
                )
        finally:
            self.cycle.progress = before
        return outcomes

    def improve(
        self,
        name: str,
        strategy: str = "train",
        *,
        objective: str | None = None,
        budget: Budget | None = None,
        params: dict[str, Any] | None = None,
    ) -> ExperimentOutcome:
        """One judged experiment with a chosen strategy, whether or not the model is at target.

        The model, the strategy and every setting in ``params`` are checked before anything
        is recorded (settings may be text, as typed on a command line: they are parsed to the
        strategy's declared types).

        Returns:
            The outcome; ``status`` ``not_applicable`` carries the strategy's reason.

        Raises:
            NotFoundError: Unknown model or strategy.
            ConfigError: An empty objective, a setting the strategy does not know, or a bad
                value (wrong kind, out of range, NaN or infinite).
        """
        self.store.get_model(name)
        strat = get_strategy(strategy)
        if objective is not None and not objective.strip():
            raise ConfigError(
                "the objective is empty; name one of the task's objectives (e.g. accuracy) or "
                "leave it out for the strategy's own."
            )
        budget = budget or Budget(self.config.train_epochs, self.config.train_seconds)
        checked = strat.check_params(params, budget)
        self.loop.recover()
        return self.loop.improve(
            name,
            cycle=self.store.max_cycle() + 1,
            strategy=strat,
            objective=objective,
            params=checked,
            budget=budget,
            only_below_target=False,
        )

    # ------------------------------------------------------------------ reports
    def status(self) -> dict[str, Any]:
        """Counts and incumbents, as plain data."""
        models = self.store.list_models()
        experiments = self.store.as_seen_now(self.store.list_experiments())
        by_status: dict[str, int] = {}
        for e in experiments:
            by_status[e.status.value] = by_status.get(e.status.value, 0) + 1
        promotions = sum(1 for e in experiments if e.decision and e.decision.value == "promote")
        copy = self._opened.read_only_copy
        return {
            "home": str(self.home),
            "store": self.store.url + (" (a read-only home, read from a copy)" if copy else ""),
            "schema_version": SCHEMA_VERSION,
            "models": len(models),
            "experiments": len(experiments),
            "experiments_by_status": by_status,
            "promotions": promotions,
            "last_cycle": self.store.max_cycle(),
            "incumbents": self.models(),
        }

    def models(self) -> list[dict[str, Any]]:
        """One row per model: task, incumbent version, its latest validation figures, and
        whether its files match the ledger.

        ``checkpoint`` and ``manifest`` are ``"ok"`` or what is wrong (see
        :func:`~selfimprove.loop.integrity.check_version_files`): every incumbent's checkpoint
        is hashed in full, which is quick for checkpoints of this size.
        """
        rows = []
        for m in self.store.list_models():
            inc = (
                self.store.version_by_id(m.incumbent_version_id)
                if m.incumbent_version_id is not None
                else None
            )
            metrics = inc.metrics if inc else {}
            files = check_version_files(self.home, m, inc) if inc else None
            rows.append(
                {
                    "name": m.name,
                    "task": m.task,
                    "family": m.family,
                    "incumbent": inc.number if inc else None,
                    "versions": len(self.store.list_versions(m.id)),
                    "strategy": inc.strategy if inc else None,
                    "sha256": inc.sha256 if inc else None,
                    "checkpoint": files.checkpoint if files else None,
                    "manifest": files.manifest if files else None,
                    "metrics": metrics,
                }
            )
        return rows

    def history(self, model: str | None = None, limit: int | None = None) -> list[ExperimentRecord]:
        """Experiments, newest first (of one model if named); one whose process is gone reads
        as ``stale`` at once."""
        model_id = self.store.get_model(model).id if model else None
        return self.store.as_seen_now(
            self.store.list_experiments(model_id=model_id, limit=limit, newest_first=True)
        )

    def export(self, fmt: str = "json", *, table: str = "experiments") -> str:
        """Everything in the ledger as JSON, or one table as CSV.

        Args:
            fmt: ``"json"`` (everything) or ``"csv"`` (one table).
            table: For CSV: ``experiments``, ``measurements`` or ``cycle_metrics``.
        """
        if fmt not in EXPORT_FORMATS:
            raise ConfigError(f"export format must be one of {EXPORT_FORMATS}, but got {fmt!r}.")
        if table not in CSV_TABLES:
            raise ConfigError(f"export table must be one of {CSV_TABLES}, but got {table!r}.")
        names = {m.id: m.name for m in self.store.list_models()}
        experiments = self.store.list_experiments()
        if fmt == "csv":
            if table == "experiments":
                return _experiments_csv(experiments, names)
            rows = (
                [_plain(x) for x in self.store.list_measurements()]
                if table == "measurements"
                else [_plain_row(r) for r in self.store.list_cycle_metrics()]
            )
            return _rows_csv(rows)
        data = {
            "format": "selfimprove-export/1",
            "schema_version": SCHEMA_VERSION,
            "exported_at": utcnow().isoformat() + "Z",
            "models": [
                {
                    **_plain(m),
                    "versions": [_plain(v) for v in self.store.list_versions(m.id)],
                }
                for m in self.store.list_models()
            ],
            "capabilities": [_plain(c) for c in self.store.list_capabilities()],
            "measurements": [_plain(x) for x in self.store.list_measurements()],
            "experiments": [
                {**_plain(e), "model": names.get(e.model_id or -1)} for e in experiments
            ],
            "events": [_plain(e) for e in reversed(self.store.list_events())],
            "cycle_metrics": [
                _plain_row(r)
                for r in self.store.list_cycle_metrics(limit=self.config.improvement_history_size)
            ],
            "meta_learnings": [_plain(m) for m in self.store.list_meta_learnings()],
            "brain_state": {
                key: self.store.load_state(key) for key in ("hormones", "triggers", "bandit")
            },
            "engine": {
                "weaknesses": [_plain(w) for w in self.store.list_weaknesses()],
                "code_improvements": [
                    {k: v for k, v in _plain(c).items() if not k.endswith("_content")}
                    for c in self.store.list_code_improvements()
                ],
                "audit_trail": [_plain(a) for a in self.store.list_audit()],
                "improvement_history": [_plain(h) for h in self.store.list_history_entries()],
                "improvement_measurements": [
                    _plain(m) for m in self.store.list_improvement_measurements()
                ],
            },
        }
        return json.dumps(clean_json(data), indent=2, default=str)


CSV_TABLES = ("experiments", "measurements", "cycle_metrics")


def _plain_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() + "Z" if hasattr(v, "isoformat") else v for k, v in row.items()}


def _rows_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()}
            )
    return buf.getvalue()


def _plain(record: Any) -> dict[str, Any]:
    out = {}
    for key, value in vars(record).items():
        out[key] = value.isoformat() + "Z" if hasattr(value, "isoformat") else value
    return out


CSV_COLUMNS = (
    "id",
    "cycle",
    "model",
    "strategy",
    "objective",
    "status",
    "decision",
    "before",
    "after",
    "relative_improvement",
    "p_value",
    "test",
    "test_before",
    "test_after",
    "epochs",
    "seconds",
    "reason",
    "created_at",
    "finished_at",
)


def _experiments_csv(experiments: list[ExperimentRecord], names: dict[int, str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for e in experiments:
        st = e.statistics
        writer.writerow(
            {
                "id": e.id,
                "cycle": e.cycle,
                "model": names.get(e.model_id or -1, ""),
                "strategy": e.strategy,
                "objective": e.objective,
                "status": e.status.value,
                "decision": e.decision.value if e.decision else "",
                "before": st.get("before"),
                "after": st.get("after"),
                "relative_improvement": st.get("relative_improvement"),
                "p_value": st.get("p_value"),
                "test": st.get("test"),
                "test_before": st.get("test_before"),
                "test_after": st.get("test_after"),
                "epochs": e.compute.get("epochs"),
                "seconds": e.compute.get("seconds"),
                "reason": e.reason,
                "created_at": e.created_at.isoformat() + "Z",
                "finished_at": e.finished_at.isoformat() + "Z" if e.finished_at else "",
            }
        )
    return buf.getvalue()
