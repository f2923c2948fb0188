"""`Store`: the one place that talks SQL, assembled from one repository per concept."""

from __future__ import annotations

from selfimprove.store._capabilities import CapabilityRepository
from selfimprove.store._code_changes import CodeChangeRepository
from selfimprove.store._convert import clean_json, utcnow
from selfimprove.store._events import EventRepository
from selfimprove.store._experiments import ExperimentRepository
from selfimprove.store._meta_learnings import MetaLearningRepository
from selfimprove.store._models import ModelRepository
from selfimprove.store._weaknesses import WeaknessRepository

__all__ = ["Store", "clean_json", "utcnow"]


class Store(
    ModelRepository,
    CapabilityRepository,
    ExperimentRepository,
    EventRepository,
    MetaLearningRepository,
    WeaknessRepository,
    CodeChangeRepository,
):
    """The ledger: models, versions, capabilities, measurements, experiments, events, and the
    engine's weaknesses, code improvements, audit trail, changelog and meta-learnings.

    One object per process, handed to whoever needs it. Opening it brings the database to the
    current schema (see :mod:`selfimprove.store.migrations`); every method of every repository
    shares its one engine and its one :meth:`transaction` / :meth:`batch` helper.

    Args:
        url: A SQLAlchemy URL. ``None``: ``$SELFIMPROVE_DB`` if set, else a SQLite file
            ``selfimprove.db`` in ``home``.
        home: Home folder for the default SQLite file (see :func:`resolve_home`).
        busy_timeout_s: How long a SQLite writer waits for a lock before failing.

    Raises:
        ConfigError: Malformed URL or unusable home folder.
        SchemaVersionError: The store was written by a newer schema.
        StoreError: The database cannot be opened.
    """
