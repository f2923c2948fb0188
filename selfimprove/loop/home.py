"""Opening a home folder's store three ways: create it, require it, or only read it.

``selfimprove run`` may create a home; every other command works on one that exists, and a
command that only reads (``status``, ``models``, ``history``, ``export``, the dashboard) must
neither create a home nor write into it. A typo in ``--home`` is then an error, not a new empty
home, and a read-only home (a mounted archive, ``chmod -w``) can still be read.

SQLite cannot open a WAL store read-only from a folder it may not write to (it needs its
``-shm`` file), and the store does not yet take a read-only URL, so a read-only home's database
(with its ``-wal`` file) is copied into a temporary folder and the copy is opened; nothing is
written beside the original. Where the home is writable the store is opened in place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL

from selfimprove.config import resolve_home
from selfimprove.errors import ConfigError, StoreError
from selfimprove.store import Store
from selfimprove.store._database import DB_FILENAME  # the store's default file name

__all__ = ["OpenedStore", "missing_home", "open_store"]


def missing_home(home: Path) -> ConfigError:
    """The error for a home that does not exist (or holds no store), with the command that
    makes one."""
    return ConfigError(
        f"no selfimprove home at {home}; run `selfimprove run --home {home}` first "
        "(or pass --home with an existing home)."
    )


@dataclass
class OpenedStore:
    """A store opened for a home, and how.

    Attributes:
        store: The open store.
        home: The home folder.
        read_only_copy: The temporary folder holding a copy of a read-only home's database
            (``None``: the store is the home's own); removed by :meth:`close`.
    """

    store: Store
    home: Path
    read_only_copy: tempfile.TemporaryDirectory[str] | None = None

    def close(self) -> None:
        """Close the store and remove the copy, if any."""
        self.store.close()
        if self.read_only_copy is not None:
            self.read_only_copy.cleanup()
            self.read_only_copy = None


def open_store(
    home: str | os.PathLike[str] | None,
    db_url: str | None = None,
    *,
    create: bool = True,
    read_only: bool = False,
) -> OpenedStore:
    """Resolve ``home`` and open its store.

    Args:
        home: The home folder (``None``: ``$SELFIMPROVE_HOME`` or ``./.selfimprove``).
        db_url: A SQLAlchemy URL (default ``$SELFIMPROVE_DB``, else the home's SQLite file).
        create: Create the home and its store when missing.
        read_only: Only read: nothing is created and nothing is written into the home (implies
            ``create=False``).

    Raises:
        ConfigError: An unusable path, or (without ``create``) no home or store there.
        SchemaVersionError: The store was written by a newer schema.
        StoreError: The database cannot be opened.
    """
    create = create and not read_only
    url = db_url or os.environ.get("SELFIMPROVE_DB") or None
    if create and url is not None:
        # The database first: one that cannot be opened leaves no new home folder behind.
        store = Store(url, home=resolve_home(home, create=False))
        try:
            return OpenedStore(store, resolve_home(home, create=True))
        except BaseException:
            store.close()
            raise
    path = resolve_home(home, create=create)
    if create:
        return OpenedStore(Store(_sqlite_url(path / DB_FILENAME), home=path), path)
    db = path / DB_FILENAME
    if not path.is_dir() or (url is None and not db.is_file()):
        raise missing_home(path)
    if url is not None or _writable(path, db):
        return OpenedStore(Store(url or _sqlite_url(db), home=path), path)
    if not read_only:
        raise ConfigError(
            f"home folder {path} is not writable (or its database is read-only); commands that "
            "only read (status, models, history, export) still work there."
        )
    copy = tempfile.TemporaryDirectory(prefix="selfimprove-read-only-")
    try:
        for suffix in ("", "-wal"):  # the -wal file holds transactions not yet checkpointed
            if Path(f"{db}{suffix}").is_file():
                shutil.copyfile(f"{db}{suffix}", Path(copy.name) / f"{DB_FILENAME}{suffix}")
        store = Store(_sqlite_url(Path(copy.name) / DB_FILENAME), home=path)
    except OSError as exc:
        copy.cleanup()
        raise StoreError(f"cannot read the store of read-only home {path}: {exc}") from None
    except BaseException:
        copy.cleanup()
        raise
    return OpenedStore(store, path, copy)


def _sqlite_url(db: Path) -> str:
    """The URL of a SQLite file, escaped: a ``?``, ``#`` or ``%`` in a folder name is part of
    the path, not a query (``f"sqlite:///{db}"`` would open ``/a`` for ``/a?b/selfimprove.db``)."""
    return URL.create("sqlite", database=str(db)).render_as_string(hide_password=False)


def _writable(home: Path, db: Path) -> bool:
    """Whether SQLite can open ``db`` in place: the file and its folder (for ``-wal`` and
    ``-shm``) writable."""
    return os.access(home, os.W_OK | os.X_OK) and os.access(db, os.W_OK)
