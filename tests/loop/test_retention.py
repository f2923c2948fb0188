"""The retention policy (seed 002's "time-series data prunable by date"): old measurements and
rejected checkpoints go; incumbents, backups, current values and the audit trail stay."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from selfimprove.errors import ConfigError
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.store import VersionStatus
from selfimprove.strategies import Budget
from tests.conftest import wine_task

TINY = Budget(epochs=1, seconds=10.0)


def _history(si: SelfImprover) -> None:
    """A real model, a few judged candidates and a measured time series."""
    task = wine_task("wine_retention")
    torch.manual_seed(0)
    module = task.build({"width": 8, "depth": 1})
    train_(module, task, TrainConfig(epochs=1, lr=1e-3, seed=0))
    si.register_model("m", task, module, {"width": 8, "depth": 1})
    for cycle in range(1, 6):
        si.loop.improve(
            "m",
            cycle=cycle,
            strategy="train",
            # some rejected (no learning), some promoted (real training)
            budget=TINY if cycle % 2 else Budget(epochs=30, seconds=20.0),
            params={"lr": 1e-6} if cycle % 2 else {"lr": 1e-2},
            only_below_target=False,
        )
        si.cycle.observe()  # measured again: the capability's time series grows


def _state(si: SelfImprover) -> dict[str, object]:
    versions = si.registry.versions("m")
    return {
        "statuses": [v.status for v in versions],
        "measurements": len(si.store.list_measurements()),
        "experiments": [(e.id, e.status, e.decision) for e in si.store.list_experiments()],
    }


def test_retention_prunes_old_series_and_rejected_weights_and_nothing_else(
    improver: SelfImprover,
) -> None:
    _history(improver)
    before = _state(improver)
    versions = improver.registry.versions("m")
    rejected = [v for v in versions if v.status is VersionStatus.REJECTED]
    kept = [v for v in versions if v.status in (VersionStatus.INCUMBENT, VersionStatus.BACKUP)]
    assert rejected and VersionStatus.BACKUP in {v.status for v in kept}, [
        v.status for v in versions
    ]
    latest = improver.store.latest_measurements(("validation", "test", "global"))

    plan = improver.prune(keep_measurements=1, keep_rejected=0, dry_run=True)
    assert _state(improver) == before  # a dry run changes nothing
    assert plan["measurements"] > 0 and len(plan["checkpoints"]) == len(rejected)

    done = improver.prune(keep_measurements=1, keep_rejected=0)
    assert {k: v for k, v in done.items() if k != "dry_run"} == {
        k: v for k, v in plan.items() if k != "dry_run"
    }
    assert done["bytes_freed"] > 0
    after = improver.registry.versions("m")
    for v in after:
        if v.checkpoint_path is None:  # weights never written (e.g. refused before saving)
            continue
        path = improver.home / v.checkpoint_path
        if v.id in {r.id for r in rejected}:
            assert v.status is VersionStatus.PRUNED and not path.exists()
            assert v.sha256 and v.metrics  # the record stays whole
        else:
            assert v.status is not VersionStatus.PRUNED and path.exists()
    # every capability keeps its current value; the experiments are untouched
    assert improver.store.latest_measurements(("validation", "test", "global")).keys() == (
        latest.keys()
    )
    assert len(improver.store.list_measurements()) == before["measurements"] - done["measurements"]
    assert _state(improver)["experiments"] == before["experiments"]
    assert improver.load("m").version.status is VersionStatus.INCUMBENT
    assert improver.rollback("m").status is VersionStatus.INCUMBENT  # a backup still loads
    assert [e.kind for e in improver.store.list_events()].count("retention") == 1


def test_retention_by_age_keeps_what_is_recent(improver: SelfImprover) -> None:
    _history(improver)
    before = _state(improver)
    report = improver.prune(older_than_days=1)  # everything here is minutes old
    assert report["measurements"] == 0 and report["checkpoints"] == []
    assert _state(improver) == before
    report = improver.prune(older_than_days=0, dry_run=True)  # everything is older than now
    assert report["measurements"] > 0 and report["checkpoints"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "prune needs"),
        ({"older_than_days": -1}, "older_than_days must be in"),
        ({"older_than_days": float("nan")}, "older_than_days must be in"),
        ({"keep_measurements": 0}, r"keep_measurements must be in \[1,"),
        ({"keep_rejected": -1}, r"keep_rejected must be in \[0,"),
        ({"keep_rejected": 10**9}, "keep_rejected must be in"),
    ],
)
def test_bad_retention_numbers_are_refused_and_change_nothing(
    home: Path, improver: SelfImprover, kwargs: dict[str, float], match: str
) -> None:
    before = _state_of_store(improver)
    with pytest.raises(ConfigError, match=match):
        improver.prune(**kwargs)  # type: ignore[arg-type]
    assert _state_of_store(improver) == before


def _state_of_store(si: SelfImprover) -> tuple[int, int]:
    return len(si.store.list_measurements()), len(si.store.list_events())


def test_the_prune_command_reports_and_refuses_bad_numbers(
    home: Path, improver: SelfImprover
) -> None:
    import json

    from tests.surfaces.test_cli import assert_clean_error, cli

    _history(improver)
    improver.close()
    before = len(SelfImprover(home).store.list_measurements())
    dry = cli("prune", "--home", str(home), "--keep-measurements", "1", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["dry_run"] and plan["measurements"] > 0
    for bad, needle in (
        ([], "say what to prune"),
        (["--keep-measurements", "0"], "greater than or equal to 1"),
    ):
        assert_clean_error(cli("prune", "--home", str(home), *bad), needle)
    done = cli("prune", "--home", str(home), "--keep-measurements", "1")
    assert done.returncode == 0, done.stderr
    assert f"pruned {plan['measurements']} measurement(s)" in done.stdout
    with SelfImprover(home) as si:
        assert len(si.store.list_measurements()) == before - plan["measurements"]
