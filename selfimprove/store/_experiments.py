"""Experiments: one strategy run each, planned, running, finished or cut short."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from selfimprove.errors import NotFoundError, StoreError
from selfimprove.store._convert import clean_json, to_record, utcnow
from selfimprove.store._database import Database
from selfimprove.store._liveness import (
    HEARTBEAT_EXPIRY_S,
    HEARTBEAT_INTERVAL_S,
    Heartbeat,
    Liveness,
    liveness,
    process_owner,
)
from selfimprove.store._schema import CycleMetricsRow, ExperimentRow
from selfimprove.store.records import Decision, ExperimentRecord, ExperimentStatus

__all__ = ["ExperimentRepository", "claim_refusal"]

_COLUMNS = frozenset(ExperimentRow.__table__.columns.keys())
#: The JSON columns :meth:`ExperimentRepository.list_experiment_summaries` reads in part.
_SUMMARISED = ("statistics", "compute", "durations", "params")


def _cut_short(verdict: Liveness) -> str:
    """The reason a stale experiment records."""
    return f"cut short: {verdict.reason} before the experiment finished"


def _new_experiment(
    spec: Mapping[str, Any], status: ExperimentStatus, now: datetime
) -> dict[str, Any]:
    """The column values of a new experiment: ``spec``'s fields, nothing decided yet."""
    return {
        "model_id": spec.get("model_id"),
        "capability_id": spec.get("capability_id"),
        "strategy": spec["strategy"],
        "objective": spec.get("objective"),
        "params": clean_json(spec.get("params") or {}),
        "hypothesis": spec.get("hypothesis", ""),
        "cycle": spec.get("cycle"),
        "seed": spec.get("seed"),
        "status": status.value,
        "decision": None,
        "reason": "",
        "statistics": {},
        "incumbent_version_id": spec.get("incumbent_version_id"),
        "candidate_version_id": None,
        "compute": {},
        "durations": {},
        "created_at": now,
        "started_at": now if status is ExperimentStatus.RUNNING else None,
        "owner": process_owner() if status is ExperimentStatus.RUNNING else None,
        "heartbeat_at": now if status is ExperimentStatus.RUNNING else None,
        "weakness_id": spec.get("weakness_id"),
        "expected_improvement": clean_json(spec.get("expected_improvement")),
    }


def claim_refusal(
    spec: Mapping[str, Any],
    others: list[ExperimentRecord],
    verdicts: Mapping[int, Liveness],
    me: str,
) -> str | None:
    """Why ``spec`` (a model's experiment about to start) must not run, or ``None``.

    Refused: the same experiment — same model, cycle, strategy, objective, settings and
    incumbent, so the same seed and the same candidate — already completed or running alive
    anywhere; or any experiment on
    the model running alive in *another* process (two drivers improving one model at once
    would waste one of the two: the second promotion would find its incumbent replaced). An
    experiment whose owner is gone (stale, or about to be marked so) claims nothing.

    Args:
        spec: The new experiment's ``model_id``, ``cycle``, ``strategy``, ``objective``,
            ``params`` (as stored) and ``incumbent_version_id``.
        others: The model's running experiments and its experiments of the same key.
        verdicts: Liveness of each running one, by id.
        me: This process as an owner.
    """
    key = ("cycle", "strategy", "objective", "incumbent_version_id")
    for e in others:
        running = e.status is ExperimentStatus.RUNNING
        alive = running and verdicts[e.id].alive
        same = all(getattr(e, k) == spec.get(k) for k in key)
        same = same and e.params == (spec.get("params") or {})
        if same and (e.status is ExperimentStatus.COMPLETED or alive):
            return (
                f"already {'running' if running else 'run'} as experiment {e.id} "
                f"(cycle {e.cycle}, {e.strategy} on the same incumbent){_by(e.owner, me)}"
            )
        if alive and e.owner != me:
            return (
                f"experiment {e.id} ({e.strategy}) is improving this model in {e.owner} "
                f"({verdicts[e.id].reason}); left to it"
            )
    return None


def _by(owner: str | None, me: str) -> str:
    return "" if owner in (None, me) else f" by {owner}"


class ExperimentRepository(Database):
    """The ``experiments`` table (a part of :class:`~selfimprove.store.Store`).

    A running experiment carries its owner and a heartbeat, refreshed every
    :attr:`heartbeat_interval_s` by a daemon thread while this store has running experiments
    (see :mod:`selfimprove.store._liveness`); the thread idles while none runs, and
    :meth:`close` stops it.
    """

    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    heartbeat_expiry_s: float = HEARTBEAT_EXPIRY_S
    _heartbeat: Heartbeat | None = None
    _heartbeat_lock = threading.Lock()

    def _track(self, experiment_id: int, running: bool) -> None:
        """Keep the heartbeat beating while this store runs experiments. Its thread starts
        with the first experiment and idles, touching nothing, while none runs, until
        :meth:`release_heartbeat` or :meth:`close` (starting and stopping a thread per
        experiment cost ~2 ms each)."""
        with self._heartbeat_lock:
            mine: set[int] = self.__dict__.setdefault("_running_here", set())
            if running:
                mine.add(experiment_id)
            else:
                mine.discard(experiment_id)
            if mine and self._heartbeat is None:
                self._heartbeat = Heartbeat(self._beat_if_running, self.heartbeat_interval_s)

    def release_heartbeat(self) -> None:
        """Stop the heartbeat's thread if this store runs no experiment now (e.g. when a loop
        stops); the next experiment starts it again."""
        with self._heartbeat_lock:
            if self.__dict__.get("_running_here"):
                return
            heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.stop()

    def _beat_if_running(self) -> int:
        """:meth:`beat`, when this store runs an experiment (else nothing is written)."""
        with self._heartbeat_lock:
            running = bool(self.__dict__.get("_running_here"))
        return self.beat() if running else 0

    def beat(self) -> int:
        """Refresh the heartbeat of this process's running experiments; returns how many."""
        stmt = (
            update(ExperimentRow)
            .where(
                ExperimentRow.status == ExperimentStatus.RUNNING.value,
                ExperimentRow.owner == process_owner(),
            )
            .values(heartbeat_at=utcnow())
        )
        with self.transaction() as s:
            return int(s.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]

    def close(self) -> None:
        """Stop the heartbeat, then release every connection."""
        with self._heartbeat_lock:
            heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.stop()
        super().close()

    def experiment_liveness(self, record: ExperimentRecord) -> Liveness:
        """Whether a ``running`` experiment's owner still runs it (see :func:`liveness`)."""
        return liveness(
            record.owner, record.heartbeat_at, utcnow(), expiry_s=self.heartbeat_expiry_s
        )

    def as_seen_now(self, records: list[ExperimentRecord]) -> list[ExperimentRecord]:
        """``records`` as they stand now: a ``running`` experiment whose owner is gone reads as
        ``stale`` (with the reason), without writing anything — what commands that only read
        show at once; the next run records it (:meth:`mark_stale_experiments`)."""
        out = []
        for r in records:
            if r.status is ExperimentStatus.RUNNING:
                verdict = self.experiment_liveness(r)
                if not verdict.alive:
                    stale = ExperimentStatus.STALE
                    r = dataclasses.replace(r, status=stale, reason=_cut_short(verdict))
            out.append(r)
        return out

    def add_experiment(
        self,
        *,
        model_id: int | None,
        strategy: str,
        objective: str | None = None,
        capability_id: int | None = None,
        params: dict[str, Any] | None = None,
        hypothesis: str = "",
        cycle: int | None = None,
        seed: int | None = None,
        incumbent_version_id: int | None = None,
        status: ExperimentStatus = ExperimentStatus.PLANNED,
    ) -> ExperimentRecord:
        """Insert an experiment (``RUNNING`` sets ``started_at``)."""
        spec = {
            "model_id": model_id,
            "strategy": strategy,
            "objective": objective,
            "capability_id": capability_id,
            "params": params,
            "hypothesis": hypothesis,
            "cycle": cycle,
            "seed": seed,
            "incumbent_version_id": incumbent_version_id,
        }
        values = _new_experiment(spec, status, utcnow())
        record: ExperimentRecord = self._insert(ExperimentRow, [values], ExperimentRecord)[0]
        if status is ExperimentStatus.RUNNING:
            self._track(record.id, running=True)
        return record

    def claim_experiment(self, **spec: Any) -> tuple[ExperimentRecord | None, str]:
        """Start a model's experiment as ``running`` unless :func:`claim_refusal` says it must
        not run: the check and the insert are one transaction that the claims of one model take
        in turn (SQLite's write lock; a PostgreSQL advisory lock on the model), so of several
        drivers exactly one gets it. The claim is a lease: the owner's heartbeat keeps it, and
        once the owner is gone the experiment is stale and the model may be claimed again.

        Args:
            spec: As for :meth:`add_experiment` (``model_id`` required).

        Returns:
            The new running experiment and ``""``, or ``None`` and why it was refused.
        """
        model_id = spec["model_id"]
        me = process_owner()
        now = utcnow()
        with self.transaction() as s:
            self._serialise(s, f"claim:model:{model_id}")
            rows = s.scalars(
                select(ExperimentRow).where(
                    ExperimentRow.model_id == model_id,
                    or_(
                        ExperimentRow.status == ExperimentStatus.RUNNING.value,
                        and_(
                            ExperimentRow.cycle == spec.get("cycle"),
                            ExperimentRow.strategy == spec["strategy"],
                        ),
                    ),
                )
            )
            others = [to_record(ExperimentRecord, r) for r in rows]
            verdicts = {
                e.id: self.experiment_liveness(e)
                for e in others
                if e.status is ExperimentStatus.RUNNING
            }
            stored = {**spec, "params": clean_json(spec.get("params") or {})}
            why = claim_refusal(stored, others, verdicts, me)
            if why is not None:
                return None, why
            values = _new_experiment(spec, ExperimentStatus.RUNNING, now)
            record = self._insert(ExperimentRow, [values], ExperimentRecord, session=s)[0]
        self._track(record.id, running=True)
        return record, ""

    def add_experiments(self, specs: list[dict[str, Any]]) -> list[ExperimentRecord]:
        """Insert several planned experiments in one transaction.

        Each spec holds :class:`ExperimentRow` fields (``strategy`` is required; ``model_id``,
        ``capability_id``, ``objective``, ``params``, ``hypothesis``, ``weakness_id``,
        ``expected_improvement`` are optional).

        Raises:
            StoreError: A field experiments do not have.
        """
        now = utcnow()
        values = []
        for spec in specs:
            unknown = set(spec) - _COLUMNS
            if unknown:
                raise StoreError(f"experiments have no fields {sorted(unknown)}.")
            # A planned experiment has no incumbent yet, whatever the spec says.
            planned = {**spec, "incumbent_version_id": None}
            values.append(_new_experiment(planned, ExperimentStatus.PLANNED, now))
        return self._insert(ExperimentRow, values, ExperimentRecord)

    def update_experiment(self, experiment_id: int, **changes: Any) -> ExperimentRecord:
        """Change fields of an experiment (enums and NaN are converted for storage).

        Finishing states set ``finished_at``; ``RUNNING`` sets ``started_at``.

        Raises:
            NotFoundError: No such experiment.
            StoreError: A field experiments do not have.
        """
        with self.transaction() as s:
            row = s.get(ExperimentRow, experiment_id)
            if row is None:
                raise NotFoundError(f"unknown experiment id {experiment_id}.")
            for key, value in changes.items():
                if not hasattr(ExperimentRow, key):
                    raise StoreError(f"experiments have no field {key!r}.")
                setattr(row, key, clean_json(value))
            status = changes.get("status")
            if status is not None:
                status = ExperimentStatus(status)
                if status is ExperimentStatus.RUNNING:
                    row.started_at = row.started_at or utcnow()
                    row.owner, row.heartbeat_at = process_owner(), utcnow()
                if status.is_finished():
                    row.finished_at = utcnow()
            s.flush()
            record = to_record(ExperimentRecord, row)
        if status is not None:
            self._track(experiment_id, running=status is ExperimentStatus.RUNNING)
        return record

    def get_experiment(self, experiment_id: int) -> ExperimentRecord:
        """The experiment with this id.

        Raises:
            NotFoundError: No such experiment.
        """
        with self.read() as s:
            row = s.get(ExperimentRow, experiment_id)
            if row is None:
                raise NotFoundError(f"unknown experiment id {experiment_id}.")
            return to_record(ExperimentRecord, row)

    def list_experiments(
        self,
        *,
        model_id: int | None = None,
        status: ExperimentStatus | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        after_id: int = 0,
    ) -> list[ExperimentRecord]:
        """Experiments by id (of one model / in one status / with an id above ``after_id`` if
        given; the first ``limit``)."""
        with self.read() as s:
            order = ExperimentRow.id.desc() if newest_first else ExperimentRow.id
            # Plain rows, not ORM objects (a new process reads the whole ledger once).
            q = select(*ExperimentRow.__table__.columns).order_by(order)
            if after_id:
                q = q.where(ExperimentRow.id > after_id)
            if model_id is not None:
                q = q.where(ExperimentRow.model_id == model_id)
            if status is not None:
                q = q.where(ExperimentRow.status == status.value)
            if limit is not None:
                q = q.limit(limit)
            return [to_record(ExperimentRecord, r) for r in s.execute(q)]

    def list_experiment_summaries(
        self, *, after_id: int = 0, limit: int | None = None
    ) -> list[ExperimentRecord]:
        """Experiments by id (above ``after_id``; the first ``limit``) with only the parts of
        their JSON that meta-learning reads, picked out in the database: ``statistics``
        (``relative_improvement``, ``before``, ``guards``), ``compute`` (``seconds``,
        ``epochs``), ``durations`` (``strategy_s``) and ``params`` (``budget.epochs``).
        Decoding every experiment's whole statistics made reading a long ledger take seconds
        per 10,000 experiments."""
        t = ExperimentRow
        picked = {
            ("statistics", "relative_improvement"): t.statistics["relative_improvement"].as_float(),
            ("statistics", "before"): t.statistics["before"].as_float(),
            ("statistics", "guards"): t.statistics["guards"],
            ("compute", "seconds"): t.compute["seconds"].as_float(),
            ("compute", "epochs"): t.compute["epochs"].as_float(),
            ("durations", "strategy_s"): t.durations["strategy_s"].as_float(),
            ("params", "budget_epochs"): t.params[("budget", "epochs")].as_float(),
        }
        plain = [c for c in t.__table__.columns if c.name not in _SUMMARISED]
        q = select(*plain, *(v.label(f"{a}__{b}") for (a, b), v in picked.items())).order_by(t.id)
        if after_id:
            q = q.where(t.id > after_id)
        if limit is not None:
            q = q.limit(limit)
        out = []
        with self.read() as s:
            # Core rows straight from the connection (the session's ORM layer costs more than
            # the query here).
            result = s.connection().execute(q)
            keys = list(result.keys())
            for row in result:
                values = dict(zip(keys, row, strict=True))
                parts: dict[str, dict[str, Any]] = {name: {} for name in _SUMMARISED}
                for a, b in picked:
                    v = values.pop(f"{a}__{b}")
                    if v is not None:
                        parts[a][b] = v
                if "budget_epochs" in parts["params"]:
                    parts["params"] = {"budget": {"epochs": parts["params"]["budget_epochs"]}}
                values.update(parts)
                out.append(to_record(ExperimentRecord, values))
        return out

    def count_experiments(self, *, decision: str | None = None) -> int:
        """How many experiments the ledger holds (with that ``decision`` if given)."""
        with self.read() as s:
            q = select(func.count(ExperimentRow.id))
            if decision is not None:
                q = q.where(ExperimentRow.decision == decision)
            return int(s.scalar(q) or 0)

    def count_experiments_by_state(
        self,
    ) -> list[tuple[str, ExperimentStatus, Decision | None, int]]:
        """How many experiments the ledger holds in each ``(strategy, status, decision)``: one
        aggregate statement, no record read (what a metrics scrape needs at any ledger size).

        Returns:
            ``(strategy, status, decision, count)`` of every group that has experiments.
        """
        cols = (ExperimentRow.strategy, ExperimentRow.status, ExperimentRow.decision)
        q = select(*cols, func.count(ExperimentRow.id)).group_by(*cols)
        with self.read() as s:
            return [
                (str(strategy), ExperimentStatus(status), Decision(d) if d else None, int(n))
                for strategy, status, d, n in s.execute(q)
            ]

    def list_weakness_experiments(self, weakness_id: int) -> list[ExperimentRecord]:
        """The experiments planned for one weakness, oldest first."""
        with self.read() as s:
            q = (
                select(ExperimentRow)
                .where(ExperimentRow.weakness_id == weakness_id)
                .order_by(ExperimentRow.id)
            )
            return [to_record(ExperimentRecord, r) for r in s.scalars(q)]

    def experiment_outline(
        self, after_id: int = 0
    ) -> list[tuple[int, int | None, int | None, str, str, str | None]]:
        """Every experiment (with an id above ``after_id``) as ``(id, model_id, cycle, strategy,
        status, decision)``, oldest first: the columns planning needs, without decoding each
        experiment's statistics (planning folds only what is new: :mod:`selfimprove.loop.history`).
        """
        with self.read() as s:
            q = select(
                ExperimentRow.id,
                ExperimentRow.model_id,
                ExperimentRow.cycle,
                ExperimentRow.strategy,
                ExperimentRow.status,
                ExperimentRow.decision,
            ).order_by(ExperimentRow.id)
            if after_id:
                q = q.where(ExperimentRow.id > after_id)
            return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in s.execute(q)]

    def max_cycle(self) -> int:
        """The highest cycle number recorded, by an experiment or by a cycle's metrics row (a
        cycle whose tasks all said they did not apply still used its number); 0 when none."""
        with self.read() as s:
            by_experiment = s.scalar(select(func.max(ExperimentRow.cycle)))
            by_cycle = s.scalar(select(func.max(CycleMetricsRow.iteration)))
            return int(max(by_experiment or 0, by_cycle or 0))

    def mark_stale_experiments(self) -> list[ExperimentRecord]:
        """Mark ``running`` experiments whose owner is gone as ``stale`` (see
        :meth:`experiment_liveness`); those of live processes, here or on other hosts, are left
        running.

        Planned experiments (the engine's, not started yet) are left alone: nothing cut them
        short.
        """
        with self.transaction() as s:
            running = s.scalars(
                select(ExperimentRow).where(ExperimentRow.status == ExperimentStatus.RUNNING.value)
            )
            now = utcnow()
            stale = []
            for row in running:
                expiry = self.heartbeat_expiry_s
                verdict = liveness(row.owner, row.heartbeat_at, now, expiry_s=expiry)
                if verdict.alive:
                    continue
                row.status = ExperimentStatus.STALE.value
                row.reason = _cut_short(verdict)
                row.finished_at = now
                stale.append(row)
            s.flush()
            return [to_record(ExperimentRecord, r) for r in stale]
