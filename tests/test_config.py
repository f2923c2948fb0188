from __future__ import annotations

from pathlib import Path

import pytest

from selfimprove.config import JudgeConfig, SelfImprovementConfig, resolve_home
from selfimprove.errors import ConfigError
from selfimprove.seeding import derive_seed


def test_config_round_trips_through_dict_with_a_version() -> None:
    cfg = SelfImprovementConfig(max_concurrent_improvements=2, performance_threshold=0.2)
    data = cfg.to_dict()
    assert data["version"] == 1
    assert SelfImprovementConfig.from_dict(data) == cfg


def test_unknown_config_keys_are_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown config keys \\['colour'\\]"):
        SelfImprovementConfig.from_dict({"colour": "blue"})


def test_newer_config_version_is_refused() -> None:
    with pytest.raises(ConfigError, match="newer"):
        SelfImprovementConfig.from_dict({"version": 99})


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"performance_threshold": 1.5}, "performance_threshold"),
        ({"alpha": 0.0}, "alpha"),
        ({"max_concurrent_improvements": 0}, "max_concurrent_improvements"),
        ({"improvement_interval": -1.0}, "improvement_interval"),
    ],
)
def test_bad_values_name_themselves(kwargs: dict[str, float], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        SelfImprovementConfig(**kwargs)  # type: ignore[arg-type]


def test_judge_config_follows_the_loop_config() -> None:
    j = SelfImprovementConfig(performance_threshold=0.2, alpha=0.01).judge()
    assert (j.performance_threshold, j.alpha) == (0.2, 0.01)
    with pytest.raises(ConfigError, match="latency_repeats"):
        JudgeConfig(latency_repeats=1)


def test_home_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SELFIMPROVE_HOME", raising=False)
    assert resolve_home() == tmp_path / ".selfimprove"
    monkeypatch.setenv("SELFIMPROVE_HOME", str(tmp_path / "env"))
    assert resolve_home() == tmp_path / "env"
    assert resolve_home(tmp_path / "arg") == tmp_path / "arg"


def test_derived_seeds_are_stable_and_distinct() -> None:
    assert derive_seed(0, 1, "m", "train") == derive_seed(0, 1, "m", "train")
    assert derive_seed(0, 1, "m", "train") != derive_seed(0, 2, "m", "train")
    assert 0 <= derive_seed("x") < 2**63


def test_malloc_arenas_are_bounded_and_applied_once() -> None:
    import sys

    from selfimprove._malloc import limit_malloc_arenas

    with pytest.raises(ConfigError, match=r"malloc_arenas must be in \[1, 64\]"):
        SelfImprovementConfig(malloc_arenas=0)
    assert SelfImprovementConfig(malloc_arenas=None).malloc_arenas is None
    applied = limit_malloc_arenas(2)
    assert applied == sys.platform.startswith("linux")  # glibc here; nothing elsewhere
    assert limit_malloc_arenas(4) == applied  # once per process: the first number stays


def test_the_mmap_threshold_is_bounded_and_pinned_once() -> None:
    import sys

    from selfimprove._malloc import pin_mmap_threshold

    for bad in (0, 33):
        with pytest.raises(ConfigError, match=r"malloc_mmap_threshold_mib must be in \[1, 32\]"):
            SelfImprovementConfig(malloc_mmap_threshold_mib=bad)
    assert SelfImprovementConfig(malloc_mmap_threshold_mib=None).malloc_mmap_threshold_mib is None
    pinned = pin_mmap_threshold(4)
    assert pinned == sys.platform.startswith("linux")  # glibc here; nothing elsewhere
    assert pin_mmap_threshold(8) == pinned  # once per process
