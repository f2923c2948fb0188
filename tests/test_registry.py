from __future__ import annotations

from pathlib import Path

import pytest
import torch

from selfimprove.errors import CheckpointError, ConfigError, NotFoundError
from selfimprove.loop.improver import SelfImprover
from selfimprove.store import VersionStatus
from tests.conftest import wine_task

# Every test on SQLite and on PostgreSQL (see tests/conftest.py), but the one without a store.
pytestmark = pytest.mark.usefixtures("store_url")


def _module(task, seed: int, params=None):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    return task.build(params or task.default_params())


def test_registered_model_reloads_to_identical_outputs(improver: SelfImprover) -> None:
    task = wine_task()
    module = _module(task, 0)
    v = improver.register_model("wine", task, module, task.default_params())
    assert v.number == 1 and v.status is VersionStatus.INCUMBENT
    loaded = improver.load("wine")
    x = task.splits().validation.x
    assert torch.equal(loaded.module(x), module.eval()(x))
    manifest = (improver.home / v.manifest_path).read_text()
    assert v.sha256 in manifest and '"task": "wine_test"' in manifest


def test_checkpoints_are_safetensors_not_pickle(improver: SelfImprover) -> None:
    task = wine_task()
    v = improver.register_model("wine", task, _module(task, 0), task.default_params())
    data = (improver.home / v.checkpoint_path).read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    assert data[8:9] == b"{" and header_len < len(data)  # safetensors: u64 length + JSON header


def test_module_that_params_cannot_rebuild_is_refused(improver: SelfImprover) -> None:
    task = wine_task()
    with pytest.raises(ConfigError, match="cannot rebuild"):
        improver.register_model("wine", task, _module(task, 0), {"width": 99, "depth": 1})
    assert improver.store.list_models() == []


def _two_versions(improver: SelfImprover):  # type: ignore[no-untyped-def]
    task = wine_task()
    improver.register_model("wine", task, _module(task, 0), task.default_params())
    model = improver.store.get_model("wine")
    v1 = improver.registry.incumbent("wine")
    v2 = improver.registry.save_version(
        model,
        _module(task, 1),
        task.default_params(),
        parent=v1,
        strategy="train",
        origin="warm_start",
        metrics={},
    )
    improver.registry.promote("wine", v2.number)
    return task, v1, v2


def test_promote_keeps_the_replaced_incumbent_as_backup(improver: SelfImprover) -> None:
    _two_versions(improver)
    assert improver.registry.incumbent("wine").number == 2
    assert improver.registry.version("wine", 1).status is VersionStatus.BACKUP
    statuses = [v.status for v in improver.registry.versions("wine")]
    assert statuses.count(VersionStatus.INCUMBENT) == 1


def test_rollback_restores_the_exact_previous_bytes(improver: SelfImprover) -> None:
    _, v1, v2 = _two_versions(improver)
    restored = improver.rollback("wine")
    assert restored.number == 1
    assert restored.sha256 == v1.sha256
    loaded = improver.load("wine")
    from selfimprove.checkpoints import sha256_hex
    from selfimprove.nn.modules import state_to_bytes

    assert sha256_hex(state_to_bytes(loaded.module)) == v1.sha256
    assert improver.registry.version("wine", 2).status is VersionStatus.ROLLED_BACK
    # and forward again, by number
    assert improver.rollback("wine", to=2).sha256 == v2.sha256


def test_rollback_without_a_previous_incumbent_says_so(improver: SelfImprover) -> None:
    task = wine_task()
    improver.register_model("wine", task, _module(task, 0), task.default_params())
    with pytest.raises(NotFoundError, match="no previous incumbent"):
        improver.rollback("wine")
    with pytest.raises(NotFoundError, match="has no version 7"):
        improver.rollback("wine", to=7)


def test_truncated_checkpoint_is_refused_and_nothing_loaded(improver: SelfImprover) -> None:
    task = wine_task()
    v = improver.register_model("wine", task, _module(task, 0), task.default_params())
    path = improver.home / v.checkpoint_path
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        improver.load("wine")


def test_rollback_to_a_corrupted_version_changes_nothing(improver: SelfImprover) -> None:
    _, v1, _ = _two_versions(improver)
    path = improver.home / v1.checkpoint_path
    path.write_bytes(b"\0" + path.read_bytes()[1:])
    with pytest.raises(CheckpointError):
        improver.rollback("wine")
    assert improver.registry.incumbent("wine").number == 2


def test_missing_checkpoint_is_a_clear_error(improver: SelfImprover) -> None:
    task = wine_task()
    v = improver.register_model("wine", task, _module(task, 0), task.default_params())
    (improver.home / v.checkpoint_path).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        improver.load("wine")


def test_retention_prunes_old_backups_but_keeps_their_records(home: Path) -> None:
    from selfimprove.config import SelfImprovementConfig

    si = SelfImprover(home, config=SelfImprovementConfig(backups_kept=1))
    task = wine_task()
    si.register_model("wine", task, _module(task, 0), task.default_params())
    model = si.store.get_model("wine")
    for seed in (1, 2, 3):
        parent = si.registry.incumbent("wine")
        v = si.registry.save_version(
            model,
            _module(task, seed),
            task.default_params(),
            parent=parent,
            strategy="train",
            origin="warm_start",
            metrics={},
        )
        si.registry.promote("wine", v.number)
    statuses = {v.number: v.status for v in si.registry.versions("wine")}
    assert statuses == {
        1: VersionStatus.PRUNED,
        2: VersionStatus.PRUNED,
        3: VersionStatus.BACKUP,
        4: VersionStatus.INCUMBENT,
    }
    assert not (home / "models/wine/v1/model.safetensors").exists()
    assert (home / "models/wine/v1/manifest.json").exists()
    with pytest.raises(CheckpointError, match="pruned"):
        si.load("wine", 1)
    assert si.rollback("wine").number == 3


def test_bad_model_name_is_refused(improver: SelfImprover) -> None:
    task = wine_task()
    with pytest.raises(ConfigError, match="model name"):
        improver.register_model("../evil", task, _module(task, 0), task.default_params())


@pytest.mark.sqlite_only  # no store
def test_checkpoint_bytes_are_safetensors_own_and_create_no_ctypes_types() -> None:
    import ctypes

    from safetensors.torch import save as torch_path

    from selfimprove.nn.modules import state_to_bytes

    module = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 2))
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    assert state_to_bytes(module) == torch_path(state)  # byte for byte
    cache = getattr(ctypes, "_pointer_type_cache", {})
    before = len(cache)
    for width in range(11, 31):  # new tensor sizes, as evolve's trials make them
        state_to_bytes(torch.nn.Linear(3, width))
    assert len(cache) == before
    half = torch.nn.Linear(3, 4).to(torch.bfloat16)  # no numpy dtype: the torch path
    assert state_to_bytes(half) == torch_path({k: v for k, v in half.state_dict().items()})


def test_a_task_object_that_later_processes_cannot_load_is_warned_about(
    improver: SelfImprover, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    task = wine_task("wine_here_only")
    module = task.build({"width": 8, "depth": 1})
    with caplog.at_level(logging.WARNING, logger="selfimprove.registry"):
        improver.register_model("here", task, module, {"width": 8, "depth": 1})
    (record,) = [r for r in caplog.records if "known only to this process" in r.getMessage()]
    assert "task='package.module:attr'" in record.getMessage()
    caplog.clear()
    torch.manual_seed(0)
    by_path = wine_task("wine_test").build({"width": 16, "depth": 1})
    with caplog.at_level(logging.WARNING, logger="selfimprove.registry"):
        improver.register_model("anywhere", "tests._tasks:wine", by_path, {"width": 16, "depth": 1})
    assert not [r for r in caplog.records if "known only" in r.getMessage()]
