"""Configuration: the seed-000 ``SelfImprovementConfig``, the judge's rules, and the home folder.

The home folder holds the store (``selfimprove.db``) and the checkpoints (``models/``). It is
``./.selfimprove`` unless ``--home`` or ``SELFIMPROVE_HOME`` says otherwise; ``SELFIMPROVE_DB``
points the store at any SQLAlchemy URL (PostgreSQL included) instead of the SQLite file.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from selfimprove.errors import ConfigError

__all__ = [
    "CONFIG_VERSION",
    "DEFAULT_HOME",
    "DEVICE_KINDS",
    "EXECUTOR_NAMES",
    "EXPORT_FORMATS",
    "MAX_CYCLES",
    "MAX_EPOCHS",
    "MAX_IMPROVEMENT_NAME",
    "MAX_KEEP",
    "MAX_RETENTION_DAYS",
    "MAX_SECONDS",
    "MAX_THREADS",
    "STRATEGY_NAMES",
    "JudgeConfig",
    "SelfImprovementConfig",
    "check_device_name",
    "resolve_home",
]

CONFIG_VERSION = 1
DEFAULT_HOME = ".selfimprove"
#: Where experiments' work may run (:attr:`SelfImprovementConfig.executor`).
EXECUTOR_NAMES = ("local", "ray")
#: Most torch threads one experiment may train with.
MAX_THREADS = 256
#: Most cycles one ``run`` call accepts.
MAX_CYCLES = 10_000
#: Most training epochs one experiment may be given.
MAX_EPOCHS = 100_000
#: Most wall-clock seconds one experiment may be given (a week).
MAX_SECONDS = 7 * 24 * 3600.0
#: What the ledger exports to (``SelfImprover.export``).
EXPORT_FORMATS = ("json", "csv")
#: Bounds of the retention policy's numbers (``selfimprove prune``): a century; a million rows.
MAX_RETENTION_DAYS = 36500
MAX_KEEP = 1_000_000
#: The strategies' names, in the order of the ``selfimprove.strategies.STRATEGIES`` table (which
#: checks it): here so that the command line lists them without importing torch.
STRATEGY_NAMES = (
    "train",
    "retrain",
    "tune",
    "evolve",
    "grow",
    "quantize",
    "prune",
    "distill",
    "heads",
)


@dataclass(frozen=True)
class JudgeConfig:
    """The promotion rule. Brain signals never change it; only these numbers do.

    Attributes:
        performance_threshold: Minimum relative reduction of the targeted objective's error-like
            form (0.1 = the error shrinks by at least 10 %).
        alpha: Significance level of the one-sided paired test on validation.
        bootstrap_resamples: Resamples of the paired bootstrap (continuous metrics).
        latency_repeats: Timed repeats per batch size when latency is measured.
        serving_batch: The batch size a served model would see, timed beside batch 1.
    """

    performance_threshold: float = 0.1
    alpha: float = 0.05
    bootstrap_resamples: int = 2000
    latency_repeats: int = 30
    serving_batch: int = 64

    def __post_init__(self) -> None:
        if not 0 <= self.performance_threshold < 1:
            raise ConfigError(
                f"performance_threshold must be in [0, 1), but got {self.performance_threshold=}."
            )
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha must be in (0, 1), but got {self.alpha=}.")
        if self.bootstrap_resamples < 100:
            raise ConfigError(
                f"bootstrap_resamples must be >= 100, but got {self.bootstrap_resamples=}."
            )
        if self.latency_repeats < 3:
            raise ConfigError(f"latency_repeats must be >= 3, but got {self.latency_repeats=}.")
        if self.serving_batch < 1:
            raise ConfigError(f"serving_batch must be >= 1, but got {self.serving_batch=}.")


@dataclass(frozen=True)
class SelfImprovementConfig:
    """Settings of the improvement loop (field names follow seed 000).

    Attributes:
        enabled: Master switch of the loop.
        auto_start: Start the background loop when the integration initialises.
        improvement_interval: Seconds between background cycles.
        max_concurrent_improvements: Experiments that may run at once.
        performance_threshold: See :class:`JudgeConfig`.
        alpha: See :class:`JudgeConfig`.
        hormone_driven: Let hormone levels steer priorities (never the promotion rule).
        genetic_enhanced: Let genetic triggers steer priorities.
        cross_model_distillation: Allow teachers from other models of the same task family.
        model_backup_enabled: Keep replaced incumbents as backups for rollback.
        backups_kept: How many replaced incumbents (and rejected candidates) keep their weights.
        improvement_history_size: Experiments kept in memory summaries.
        train_epochs: Epoch budget of one ``train`` experiment.
        train_seconds: Wall-clock budget of one experiment, in seconds.
        observe_refresh_every: Every this many cycles (from the first) the cycle loads every
            incumbent afresh (checksum verified) and measures it again; in between, an
            incumbent that has not changed since it was measured is not read or measured again
            (1: every cycle). A checkpoint is verified whenever it is loaded to be used.
        malloc_arenas: At most this many glibc malloc arenas in a process that runs the loop
            (set when the cycle is created; Linux only): with glibc's default of one per
            thread, resident memory kept growing over long runs. ``None``: leave malloc as it
            is.
        malloc_mmap_threshold_mib: Blocks of at least this many MiB are mmapped and returned to
            the system when freed (glibc; set when the cycle is created): glibc's own,
            self-raising threshold let freed large buffers stay resident, so memory jumped by
            tens of MiB between cycles. ``None``: leave malloc as it is.
        threads: Torch intra-op threads an experiment's work trains with, wherever it runs.
            A matrix product's rounding follows the thread count, so it is a setting of its
            own, not the machine's core count: the same seed then gives the same decisions on
            any machine and with any executor. One thread suits the small models of this
            loop (and a loaded machine: two threads sharing a busy core trained 30× slower
            here); raise it for large models on idle cores.
        executor: Where experiments' work runs: ``local`` (this process) or ``ray`` (a Ray
            cluster; only the driver judges and commits).
        ray_address: The Ray cluster to use (``host:port``, ``ray://host:port`` or ``auto``);
            ``None`` with ``executor="ray"``: a local cluster started for this process.
        device: Where training, evaluation, every strategy and the judge's latency timings
            run: ``cpu`` (the default: the small models of this loop gain little from a GPU,
            and the CPU gives the same decisions bit for bit on every run), ``cuda`` /
            ``cuda:N``, or ``auto`` (CUDA where this process sees one, else the CPU). A device
            that is absent is refused when the loop starts, before anything is written.
            Checkpoints carry no device. Int8 quantization runs on the CPU whatever is set.
    """

    enabled: bool = True
    auto_start: bool = True
    improvement_interval: float = 300.0
    max_concurrent_improvements: int = 3
    performance_threshold: float = 0.1
    alpha: float = 0.05
    hormone_driven: bool = True
    genetic_enhanced: bool = True
    cross_model_distillation: bool = True
    model_backup_enabled: bool = True
    backups_kept: int = 5
    improvement_history_size: int = 1000
    train_epochs: int = 30
    train_seconds: float = 60.0
    observe_refresh_every: int = 10
    malloc_arenas: int | None = 2
    malloc_mmap_threshold_mib: int | None = 4
    threads: int = 1
    executor: str = "local"
    ray_address: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.improvement_interval <= 0:
            raise ConfigError(
                f"improvement_interval must be > 0 seconds, but got {self.improvement_interval=}."
            )
        if self.max_concurrent_improvements < 1:
            raise ConfigError(
                "max_concurrent_improvements must be >= 1, "
                f"but got {self.max_concurrent_improvements=}."
            )
        if self.backups_kept < 1:
            raise ConfigError(f"backups_kept must be >= 1, but got {self.backups_kept=}.")
        if self.train_epochs < 1:
            raise ConfigError(f"train_epochs must be >= 1, but got {self.train_epochs=}.")
        if self.train_seconds <= 0:
            raise ConfigError(f"train_seconds must be > 0, but got {self.train_seconds=}.")
        if self.malloc_mmap_threshold_mib is not None and not (
            1 <= self.malloc_mmap_threshold_mib <= 32
        ):
            raise ConfigError(
                "malloc_mmap_threshold_mib must be in [1, 32] (glibc's largest) or None (leave "
                f"malloc as it is), but got {self.malloc_mmap_threshold_mib=}."
            )
        if self.malloc_arenas is not None and not 1 <= self.malloc_arenas <= 64:
            raise ConfigError(
                f"malloc_arenas must be in [1, 64] or None (leave malloc as it is), but got "
                f"{self.malloc_arenas=}."
            )
        if not 1 <= self.observe_refresh_every <= 1_000_000:
            raise ConfigError(
                "observe_refresh_every must be in [1, 1000000] cycles, but got "
                f"{self.observe_refresh_every=}."
            )
        if not 1 <= self.threads <= MAX_THREADS:
            raise ConfigError(f"threads must be in [1, {MAX_THREADS}], but got {self.threads=}.")
        if self.executor not in EXECUTOR_NAMES:
            raise ConfigError(
                f"executor must be one of {', '.join(EXECUTOR_NAMES)}, but got {self.executor!r}."
            )
        if self.ray_address is not None:
            if self.executor != "ray":
                raise ConfigError(
                    "ray_address is set but the executor is local; use executor='ray' "
                    "(--executor ray) with it."
                )
            if not self.ray_address.strip() or len(self.ray_address) > 1000:
                raise ConfigError(
                    f"ray_address must be host:port, ray://host:port or auto, but got "
                    f"{self.ray_address[:60]!r}."
                )
        check_device_name(self.device)
        self.judge()  # validates performance_threshold and alpha

    def judge(self) -> JudgeConfig:
        """The judge's part of this config."""
        return JudgeConfig(performance_threshold=self.performance_threshold, alpha=self.alpha)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form with a version number (round-trips through :meth:`from_dict`)."""
        return {"version": CONFIG_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelfImprovementConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        data = dict(data)
        version = data.pop("version", CONFIG_VERSION)
        if version > CONFIG_VERSION:
            raise ConfigError(
                f"config version {version} is newer than this selfimprove understands "
                f"({CONFIG_VERSION}); upgrade selfimprove."
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known keys are {sorted(known)}.")
        return cls(**data)


DEVICE_KINDS = ("auto", "cpu", "cuda")
#: Most characters of a code improvement's name (what the store's name column holds).
MAX_IMPROVEMENT_NAME = 256


def check_device_name(name: str) -> str:
    """``name`` if it is a device setting this package understands (whether that device is
    present is checked where it is used: :func:`selfimprove.nn.device.resolve_device`).

    Raises:
        ConfigError: Anything but ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """
    kind, sep, index = str(name).partition(":")
    if kind not in DEVICE_KINDS or (sep and (kind != "cuda" or not index.isdigit())):
        raise ConfigError(f"unknown device {str(name)[:40]!r}; use auto, cpu, cuda or cuda:N.")
    return str(name)


def resolve_home(home: str | os.PathLike[str] | None = None, *, create: bool = True) -> Path:
    """The home folder: ``home`` if given, else ``$SELFIMPROVE_HOME``, else ``./.selfimprove``.

    Args:
        home: The folder (``None``: the environment's or the default).
        create: Make the folder if it is missing and require it to be writable; ``False``
            only resolves the path (for commands that read an existing home).

    Raises:
        ConfigError: An empty path, a path the system refuses (too long, a NUL byte, a loop of
            links), a file in the way, or a folder that cannot be created or written to.
    """
    raw = home if home is not None else os.environ.get("SELFIMPROVE_HOME") or DEFAULT_HOME
    if isinstance(raw, str) and not raw.strip():
        raise ConfigError(
            "the home folder path is empty; pass --home with a folder path (or leave it out "
            f"for $SELFIMPROVE_HOME or ./{DEFAULT_HOME})."
        )
    try:
        path = Path(raw).expanduser().resolve()
        is_file = path.exists() and not path.is_dir()
    except (OSError, ValueError, RuntimeError) as exc:  # too long, NUL byte, a loop of links
        raise ConfigError(
            f"cannot use {_short(raw)} as the home folder ({_why(exc)}); pass --home with a "
            "folder path."
        ) from None
    if is_file:
        raise ConfigError(f"home {path} is a file, not a folder; pass --home with a folder path.")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create home folder {_short(path)} ({_why(exc)}); "
                "pass --home or set SELFIMPROVE_HOME to a writable folder."
            ) from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(
                f"home folder {path} is not writable; "
                "pass --home or set SELFIMPROVE_HOME to a writable folder."
            )
    return path


def _short(path: str | os.PathLike[str], limit: int = 120) -> str:
    """A path for a message: at most ``limit`` characters, quoted as ``repr`` does."""
    text = repr(os.fspath(path))
    return text if len(text) <= limit else text[: limit // 2] + "…" + text[-limit // 2 :]


def _why(exc: BaseException) -> str:
    """The system's reason (``File name too long``) without the repeated path."""
    return getattr(exc, "strerror", None) or str(exc)
