"""Issue 16: a decision's ledger rows are written together or not at all (fewer transactions a
cycle, and no half-written decision when one write fails)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from selfimprove.config import SelfImprovementConfig
from selfimprove.errors import StoreError
from selfimprove.loop.improver import SelfImprover
from selfimprove.store import ExperimentStatus, Store, VersionStatus

from .test_crash import _setup


def _failing(kind: str, when: Any) -> Any:
    """``Store.add_event`` that fails for the events ``when`` picks, as a full disk would."""
    inner = Store.add_event

    def add_event(self: Store, k: str, message: str, **kw: Any) -> Any:
        if k == kind and when(message, kw):
            raise StoreError("injected: the disk is full")
        return inner(self, k, message, **kw)

    return add_event


def test_a_promotion_whose_event_cannot_be_written_leaves_the_incumbent_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    sha = _setup(home)
    monkeypatch.setattr(
        Store, "add_event", _failing("promote", lambda msg, kw: "is the incumbent" in msg)
    )
    with SelfImprover(home, config=SelfImprovementConfig(train_epochs=20), seed=0) as si:
        with pytest.raises(StoreError, match="injected"):
            si.run(1, planned=False)
        versions = si.registry.versions("wine")
        # The candidate was judged better and saved; the pointer did not move without its event.
        assert [v.number for v in versions] == [1, 2]
        assert [v.status for v in versions] == [VersionStatus.INCUMBENT, VersionStatus.CANDIDATE]
        assert si.load("wine").version.sha256 == sha
        assert not [e for e in si.store.list_events() if e.kind == "promote"]
        (exp,) = si.store.list_experiments()
        assert exp.status is ExperimentStatus.RUNNING  # as after a crash at that point
    monkeypatch.undo()
    with SelfImprover(home, config=SelfImprovementConfig(train_epochs=20), seed=0) as si:
        outcome = si.run(1, planned=False)[0]  # the next cycle carries on from v1
        assert outcome.status == "completed" and outcome.version_before == 1


def test_a_cycle_s_metrics_row_and_brain_state_are_saved_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    _setup(home)
    inner = Store.save_state

    def save_state(self: Store, key: str, value: Any) -> None:
        if key == "bandit":
            raise StoreError("injected: the disk is full")
        inner(self, key, value)

    monkeypatch.setattr(Store, "save_state", save_state)
    with SelfImprover(home, config=SelfImprovementConfig(train_epochs=2), seed=0) as si:
        with pytest.raises(StoreError, match="injected"):
            si.run(1)
        # Neither the cycle's row nor any part of the brain it left is in the ledger.
        assert si.store.list_cycle_metrics() == []
        assert si.store.load_state("hormones") is None
        assert si.store.load_state("triggers") is None
