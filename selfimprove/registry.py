"""The model registry: models, their versions, safetensors checkpoints, promote and rollback.

A version is ``models/<model>/v<N>/model.safetensors`` plus ``manifest.json`` (architecture
params, task, parent, strategy, origin, metrics, sha256, time). The number ``N`` is reserved in
the store first (one atomic update, so processes sharing a store never get the same one); the
files are then written once (temp file, fsync, hard link that fails rather than replace) *before*
the one database transaction that records the version and, for a promotion, moves the incumbent
pointer; a crash at any moment leaves the previous incumbent loadable. Loading verifies the
sha256 recorded in the store before parsing anything.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from selfimprove._faults import crash_point
from selfimprove.checkpoints import (
    atomic_write,
    atomic_write_json,
    read_verified,
    sha256_hex,
    state_from_bytes,
)
from selfimprove.errors import CheckpointError, ConfigError, NotFoundError
from selfimprove.nn.modules import build_module, load_state_, module_state, state_to_bytes
from selfimprove.store import ModelRecord, Store, VersionRecord, VersionStatus, clean_json, utcnow
from selfimprove.tasks import BUILTIN_TASKS, Task, register_task, resolve_task

__all__ = ["MANIFEST_FORMAT", "LoadedModel", "ModelHome", "Registry"]

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = "selfimprove-manifest/1"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class LoadedModel:
    """A version loaded from disk, checksum verified."""

    model: ModelRecord
    version: VersionRecord
    task: Task
    module: nn.Module


class Registry:
    """Models and versions over a :class:`Store` and a home folder.

    Args:
        store: The ledger.
        home: Folder that holds ``models/``.
        backups_kept: Replaced incumbents (and, separately, rejected candidates) whose weights
            are kept; older ones are pruned (their records stay). 0 keeps none: no rollback.
    """

    def __init__(self, store: Store, home: str | Path, *, backups_kept: int = 5) -> None:
        if backups_kept < 0:
            raise ConfigError(f"backups_kept must be >= 0, but got {backups_kept=}.")
        self.store = store
        self.home = Path(home)
        self.backups_kept = backups_kept

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    # ------------------------------------------------------------------ registration
    def register(
        self,
        name: str,
        task: Task | str,
        module: nn.Module,
        params: dict[str, Any],
        *,
        description: str = "",
        strategy: str = "initial",
        origin: str = "user",
        metrics: dict[str, Any] | None = None,
    ) -> VersionRecord:
        """Register a model with its first version, which becomes the incumbent.

        Args:
            name: Unique model name (letters, digits, ``_ . -``).
            task: A :class:`Task` (user tasks are registered in this process) or a task name.
            module: The model; it must match ``task.build(params)`` (checked by reloading).
            params: Architecture params that rebuild ``module`` through the task.
            description: Free text.
            strategy: What made this version (recorded in its lineage).
            origin: Where its weights came from (``user``, ``fresh_init``, ...).
            metrics: Metrics to keep in the manifest.

        Raises:
            ConfigError: Bad name, name taken, or ``module`` does not match ``params``.
        """
        if not _NAME_RE.match(name):
            raise ConfigError(
                f"model name must be 1-128 letters, digits, '_', '.' or '-', but got {name!r}."
            )
        if isinstance(task, Task):
            if task.name not in BUILTIN_TASKS:
                register_task(task)
                logger.warning(
                    "model %s: task %r is known only to this process (registered from a Task "
                    "object), so a later command or process cannot load the model ('unknown "
                    "task') unless it registers the task again with selfimprove.register_task; "
                    "or register the model with task='package.module:attr' naming an importable "
                    "Task, which every process can load",
                    name,
                    task.name,
                )
            task_obj, task_name = task, task.name
        else:
            task_obj, task_name = resolve_task(task), task
        self._check_rebuild(task_obj, module, params)
        model = self.store.add_model(name, task_name, task_obj.family, description)
        for obj in task_obj.objectives:
            self.store.upsert_capability(
                f"{name}/{obj.name}",
                type="model_objective",
                direction=obj.direction.value,
                target=obj.target,
                unit=obj.unit,
                description=f"{obj.name} of model {name} on task {task_name}",
                model_id=model.id,
                objective=obj.name,
            )
        version = self.save_version(
            model,
            module,
            params,
            parent=None,
            strategy=strategy,
            origin=origin,
            metrics=metrics or {},
            status=VersionStatus.INCUMBENT,
        )
        self.store.add_event("register", f"registered {name} (task {task_name})", model_id=model.id)
        return version

    @staticmethod
    def _check_rebuild(task: Task, module: nn.Module, params: dict[str, Any]) -> None:
        rebuilt = build_module(task, params)
        want = {k: tuple(v.shape) for k, v in module_state(module).items()}
        got = {k: tuple(v.shape) for k, v in module_state(rebuilt).items()}
        if want != got:
            raise ConfigError(
                f"task {task.name!r} cannot rebuild this module from params {params}: "
                "the state dict keys or shapes differ; pass the params your builder needs."
            )

    # ------------------------------------------------------------------ writing
    def save_version(
        self,
        model: ModelRecord,
        module: nn.Module,
        params: dict[str, Any],
        *,
        parent: VersionRecord | None,
        strategy: str,
        origin: str,
        metrics: dict[str, Any],
        status: VersionStatus = VersionStatus.CANDIDATE,
    ) -> VersionRecord:
        """Write a version's files atomically, then record it in one transaction.

        With ``status=INCUMBENT`` the same transaction moves the incumbent pointer.
        """
        number = self.store.reserve_version_number(model.id)
        folder = self._fresh_folder(model.name, number)
        data = state_to_bytes(module)
        sha = sha256_hex(data)
        ckpt, manifest_path = folder / "model.safetensors", folder / "manifest.json"
        manifest = {
            "format": MANIFEST_FORMAT,
            "model": model.name,
            "version": number,
            "task": model.task,
            "family": model.family,
            "params": params,
            "parent_version": parent.number if parent else None,
            "strategy": strategy,
            "origin": origin,
            "metrics": metrics,
            "sha256": sha,
            "size_bytes": len(data),
            "created_at": utcnow().isoformat() + "Z",
        }
        atomic_write(ckpt, data, exclusive=True)
        atomic_write_json(manifest_path, clean_json(manifest), exclusive=True)
        crash_point("after_checkpoint_write")
        version = self.store.add_version(
            model_id=model.id,
            number=number,
            parent_id=parent.id if parent else None,
            status=status,
            strategy=strategy,
            origin=origin,
            params=params,
            metrics=metrics,
            checkpoint_path=str(ckpt.relative_to(self.home)),
            manifest_path=str(manifest_path.relative_to(self.home)),
            sha256=sha,
            size_bytes=len(data),
        )
        logger.info("saved %s v%d (%s, %s)", model.name, number, strategy, status.value)
        return version

    def _fresh_folder(self, name: str, number: int) -> Path:
        """The folder of a newly reserved version number, empty.

        A number is handed out once, so the folder exists only when files were left without a
        record (a crash between writing and recording, before schema 5 reserved numbers). They
        belong to no version: they are moved aside, never overwritten or deleted.
        """
        folder = self.models_dir / name / f"v{number}"
        if folder.exists():
            aside = folder.with_name(f"{folder.name}.unrecorded-{utcnow():%Y%m%dT%H%M%S%f}")
            folder.rename(aside)
            logger.warning("moved unrecorded files of %s v%d aside to %s", name, number, aside)
        return folder

    # ------------------------------------------------------------------ reading
    def incumbent(self, name: str) -> VersionRecord:
        """The incumbent version of model ``name``."""
        model = self.store.get_model(name)
        if model.incumbent_version_id is None:
            raise NotFoundError(f"model {name!r} has no incumbent version.")
        return self.store.version_by_id(model.incumbent_version_id)

    def version(self, name: str, number: int | None = None) -> VersionRecord:
        """Version ``number`` of ``name`` (the incumbent when ``None``)."""
        if number is None:
            return self.incumbent(name)
        return self.store.get_version(self.store.get_model(name), number)

    def load(self, name: str, number: int | None = None) -> LoadedModel:
        """Load a version (the incumbent by default), verifying its checksum.

        Raises:
            NotFoundError: Unknown model or version, or its task cannot be resolved.
            CheckpointError: The checkpoint is missing, truncated, altered or does not fit.
        """
        model = self.store.get_model(name)
        version = self.store.get_version(model, number) if number is not None else None
        return self.load_record(model, version)

    def load_record(self, model: ModelRecord, version: VersionRecord | None = None) -> LoadedModel:
        """:meth:`load` for a model (and version) already read from the store.

        Args:
            model: The model.
            version: One of its versions (default: its incumbent).

        Raises:
            NotFoundError: No incumbent, or the model's task cannot be resolved.
            CheckpointError: The checkpoint is missing, truncated, altered or does not fit.
        """
        if version is None:
            if model.incumbent_version_id is None:
                raise NotFoundError(f"model {model.name!r} has no incumbent version.")
            version = self.store.version_by_id(model.incumbent_version_id)
        task = resolve_task(model.task)
        return LoadedModel(model, version, task, self.load_module(model, version, task))

    def load_module(self, model: ModelRecord, version: VersionRecord, task: Task) -> nn.Module:
        """Rebuild and fill the module of ``version`` (checksum verified first)."""
        what = f"{model.name} v{version.number}"
        if version.checkpoint_path is None:
            raise CheckpointError(
                f"the weights of {what} were pruned by the retention policy; pick a newer version."
            )
        data = read_verified(self.home / version.checkpoint_path, version.sha256, what=what)
        state = state_from_bytes(data, source=what)
        module = build_module(task, version.params)
        load_state_(module, state, what=what)
        module.eval()
        return module

    def verify(self, name: str, number: int | None = None) -> VersionRecord:
        """Check a version's checksum without loading it; returns the version."""
        version = self.version(name, number)
        if version.checkpoint_path is None:
            raise CheckpointError(f"the weights of {name} v{version.number} were pruned.")
        read_verified(
            self.home / version.checkpoint_path, version.sha256, what=f"{name} v{version.number}"
        )
        return version

    # ------------------------------------------------------------------ decisions
    def promote(
        self, name: str, number: int, *, replacing: VersionRecord | None = None
    ) -> VersionRecord:
        """Make version ``number`` the incumbent (checksum verified first); the replaced
        incumbent is kept as a backup.

        Args:
            replacing: The incumbent the version was judged against: the promotion is refused
                if another version has become the incumbent since (another process).

        Raises:
            IncumbentChangedError: ``replacing`` is no longer the incumbent; nothing changed.
        """
        model = self.store.get_model(name)
        version = self.verify(name, number)
        crash_point("before_promote")
        with self.store.batch():  # the pointer and its event together, or neither
            self.store.set_incumbent(
                model.id,
                version.id,
                old_status=VersionStatus.BACKUP,
                replacing=replacing.id if replacing is not None else None,
            )
            self.store.add_event(
                "promote",
                f"{name} v{number} is the incumbent",
                model_id=model.id,
                payload={"version": number},
            )
        self.apply_retention(model)
        return self.store.version_by_id(version.id)

    def reject(self, version: VersionRecord) -> None:
        """Mark a candidate rejected: one write, part of the caller's batch if any. Its weights
        are kept under the retention policy: call :meth:`apply_retention` once the rejection
        is committed (files are never deleted inside a transaction that may roll back)."""
        self.store.set_version_status(version.id, VersionStatus.REJECTED)

    def rollback(self, name: str, to: int | None = None) -> VersionRecord:
        """Restore a previous version as the incumbent.

        Args:
            name: The model.
            to: Version number; default: the most recently replaced incumbent.

        Returns:
            The version that is now the incumbent.

        Raises:
            NotFoundError: Nothing to roll back to, or an unknown version.
            CheckpointError: The target's checkpoint is missing or corrupted (nothing changes).
        """
        model = self.store.get_model(name)
        current = self.incumbent(name)
        if to is None:
            backups = [
                v
                for v in self.store.list_versions(model.id, statuses=(VersionStatus.BACKUP,))
                if v.retired_at is not None
            ]
            if not backups:
                raise NotFoundError(
                    f"model {name!r} has no previous incumbent to roll back to; "
                    "name a version with --to (see `selfimprove history`)."
                )
            target = max(backups, key=lambda v: (v.retired_at, v.id))
        else:
            target = self.store.get_version(model, to)
            if target.id == current.id:
                raise ConfigError(f"{name} v{to} is already the incumbent; nothing to roll back.")
        self.verify(name, target.number)
        self.store.set_incumbent(model.id, target.id, old_status=VersionStatus.ROLLED_BACK)
        self.store.add_event(
            "rollback",
            f"{name}: v{current.number} → v{target.number}",
            model_id=model.id,
            payload={"from": current.number, "to": target.number},
        )
        logger.info("rolled back %s from v%d to v%d", name, current.number, target.number)
        return self.store.version_by_id(target.id)

    def apply_retention(self, model: ModelRecord) -> list[int]:
        """Delete the weights of backups and rejected candidates beyond ``backups_kept`` each.

        Returns:
            The version numbers pruned.
        """
        pruned: list[int] = []
        versions = self.store.list_versions(
            model.id, statuses=(VersionStatus.BACKUP, VersionStatus.REJECTED)
        )
        for status in (VersionStatus.BACKUP, VersionStatus.REJECTED):
            group = sorted(
                (v for v in versions if v.status is status),
                key=lambda v: (v.retired_at or v.created_at, v.id),
                reverse=True,
            )
            for v in group[self.backups_kept :]:
                self._prune(v, dry_run=False)
                pruned.append(v.number)
        if pruned:
            logger.info("pruned weights of %s versions %s", model.name, pruned)
        return pruned

    def prune_rejected(
        self, *, before: datetime | None = None, keep: int | None = None, dry_run: bool = False
    ) -> list[tuple[str, int, int]]:
        """Delete the weights of rejected candidates judged before ``before`` and / or beyond
        the newest ``keep`` of each model. Only ``rejected`` versions: incumbents, backups (what
        a rollback needs) and candidates still being judged are never touched; each record and
        its manifest stay (status ``pruned``), so the audit trail is whole.

        Returns:
            ``(model, version number, bytes freed)`` of each version pruned (``dry_run``: that
            would be).

        Raises:
            ConfigError: Neither ``before`` nor ``keep``, or ``keep`` < 0.
        """
        if before is None and keep is None:
            raise ConfigError("prune_rejected needs before= (a date) or keep= (a count).")
        if keep is not None and keep < 0:
            raise ConfigError(f"keep must be >= 0, got {keep}.")
        out: list[tuple[str, int, int]] = []
        for model in self.store.list_models():
            rejected = sorted(
                self.store.list_versions(model.id, statuses=(VersionStatus.REJECTED,)),
                key=lambda v: (v.retired_at or v.created_at, v.id),
                reverse=True,
            )
            for i, v in enumerate(rejected):
                when = v.retired_at or v.created_at
                if (before is not None and when < before) or (keep is not None and i >= keep):
                    out.append((model.name, v.number, self._prune(v, dry_run)))
        return out

    def _prune(self, v: VersionRecord, dry_run: bool) -> int:
        """Delete one version's weights (the record and manifest stay); the bytes freed."""
        path = self.home / v.checkpoint_path if v.checkpoint_path else None
        size = path.stat().st_size if path is not None and path.exists() else 0
        if not dry_run:
            self.store.set_version_status(v.id, VersionStatus.PRUNED)
            if path is not None:
                path.unlink(missing_ok=True)
        return size

    def versions(self, name: str) -> list[VersionRecord]:
        return self.store.list_versions(self.store.get_model(name).id)


class ModelHome(Protocol):
    """A home folder's models as the layers above see them (``SelfImprover`` is one).

    Neural alternatives and the gain model register and load their networks through it; they
    sit below the loop, so they take the home as this contract rather than importing it.
    """

    store: Store
    registry: Registry

    def register_model(
        self,
        name: str,
        task: Task | str,
        module: nn.Module,
        params: dict[str, Any],
        *,
        description: str = "",
    ) -> VersionRecord:
        """Evaluate ``module`` and register it as version 1, the incumbent."""
        ...

    def load(self, name: str, version: int | None = None) -> LoadedModel:
        """Load a version (the incumbent by default), checksum verified."""
        ...
