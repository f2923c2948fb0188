"""Shared fixtures: tiny real tasks on CPU, a fresh home folder per test, and the database
backends the store's tests run on (SQLite always; PostgreSQL where a throwaway server starts).

A test runs on every backend when it (or its module, by ``pytestmark =
pytest.mark.usefixtures("store_url")``) asks for ``store_url``; ``@pytest.mark.sqlite_only``
keeps one test of such a module on SQLite alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from selfimprove.config import SelfImprovementConfig
from selfimprove.loop.improver import SelfImprover
from selfimprove.tasks import SupervisedTask, build_mlp
from tests._postgres import PostgresCluster, PostgresUnavailable, start_cluster

torch.set_num_threads(1)

#: The backends a ``store_url`` test runs on, in order.
BACKENDS = ("sqlite", "postgresql")
#: What became of the session's PostgreSQL server, for the terminal summary.
_postgres_outcome: dict[str, str] = {}
#: How the reason of every PostgreSQL skip begins.
POSTGRES_SKIP = "PostgreSQL is not available: "


def wine_task(name: str = "wine_test", target: float = 0.99) -> SupervisedTask:
    """A small real classification task (scikit-learn's bundled wine data, standardised)."""
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return SupervisedTask.classification(
        name,
        x,
        y,
        build=lambda p: build_mlp(13, 3, p),
        default_params={"width": 16, "depth": 1},
        target=target,
    )


@pytest.fixture(scope="session", autouse=True)
def _tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The machine-wide cache (``tiny``'s) is a folder of the session, never the user's own."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("selfimprove_cache")
        mp.setenv("SELFIMPROVE_CACHE", str(path))
        yield path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SELFIMPROVE_DB", raising=False)
    monkeypatch.delenv("SELFIMPROVE_HOME", raising=False)
    monkeypatch.delenv("SELFIMPROVE_CRASH_AT", raising=False)
    return tmp_path / "home"


@pytest.fixture
def fast_config() -> SelfImprovementConfig:
    return SelfImprovementConfig(train_epochs=20, train_seconds=30.0)


@pytest.fixture
def improver(home: Path, fast_config: SelfImprovementConfig) -> Iterator[SelfImprover]:
    si = SelfImprover(home, config=fast_config, seed=0)
    yield si
    si.close()


# ---------------------------------------------------------------------------- database backends
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite_only: run on SQLite alone, in a module whose tests run on every backend "
        "(the test reads SQLite's own file, or needs no database)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_url" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize("store_url", BACKENDS[:1] if only else BACKENDS, indirect=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[object]:
    """Every PostgreSQL skip reported from here, so that ``-ra`` folds them into one line."""
    report = yield
    longrepr = getattr(report, "longrepr", None)
    if report.skipped and isinstance(longrepr, tuple) and POSTGRES_SKIP in str(longrepr[2]):
        report.longrepr = (__file__, None, longrepr[2])
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if "skipped" in _postgres_outcome:
        terminalreporter.write_line(
            f"PostgreSQL tests skipped: {_postgres_outcome['skipped']}", yellow=True
        )
    elif "version" in _postgres_outcome:
        terminalreporter.write_line(
            f"PostgreSQL tests ran on a throwaway PostgreSQL {_postgres_outcome['version']}"
        )


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster | None]:
    """The session's throwaway PostgreSQL server (started at first use); ``None`` if none can
    run here (the reason is kept for the skips and the summary)."""
    try:
        cluster = start_cluster()
    except PostgresUnavailable as exc:
        _postgres_outcome["skipped"] = str(exc)
        yield None
        return
    _postgres_outcome["version"] = cluster.version
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster | None) -> Iterator[str]:
    """A SQLAlchemy URL of a new empty PostgreSQL schema, the test's own (dropped after it).

    Skips the test, with the reason, where no PostgreSQL server can run.
    """
    if postgres_cluster is None:
        pytest.skip(POSTGRES_SKIP + _postgres_outcome["skipped"])
    name, url = postgres_cluster.create_schema()
    yield url
    postgres_cluster.drop_schema(name)


@pytest.fixture
def store_url(
    request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch
) -> str | None:
    """The database every store of the test opens by default, one backend per parameter.

    ``sqlite``: ``None``, the SQLite file in the test's home. ``postgresql``: a new empty schema
    of the session's PostgreSQL server (see tests/_postgres.py), also set as ``SELFIMPROVE_DB``
    so that stores opened without a URL, and processes the test starts, use it.
    """
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("SELFIMPROVE_DB", url)
    return url
