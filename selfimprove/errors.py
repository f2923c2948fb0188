"""The package's exceptions: one root, a few documented families.

Every error a user can cause carries one line that says what was wrong and how to fix it; the
CLI prints that line and exits with code 2.
"""

from __future__ import annotations

__all__ = [
    "BudgetExceededError",
    "CheckpointError",
    "CodePatchError",
    "ConfigError",
    "DivergedError",
    "IncumbentChangedError",
    "NotFoundError",
    "SchemaVersionError",
    "SelfImproveError",
    "StoreError",
    "StrategyError",
    "TaskError",
]


class SelfImproveError(Exception):
    """Root of every error raised on purpose by selfimprove."""


class ConfigError(SelfImproveError):
    """A setting is invalid: a bad home folder, a malformed database URL, an out-of-range value."""


class StoreError(SelfImproveError):
    """The database failed or refused a read or write; nothing was changed."""


class SchemaVersionError(StoreError):
    """The store was written by a newer schema than this version of selfimprove understands."""


class IncumbentChangedError(StoreError):
    """A promotion was refused: the model's incumbent is no longer the version the candidate
    was judged against (another process promoted or rolled back meanwhile)."""


class NotFoundError(SelfImproveError):
    """An unknown model, version, task, strategy or experiment was named."""


class CheckpointError(SelfImproveError):
    """A checkpoint is missing, truncated or fails its sha256 check; it was not loaded."""


class CodePatchError(SelfImproveError):
    """A code improvement was refused (parse, root, hash or state check); no file was changed."""


class TaskError(SelfImproveError):
    """A task is misdefined (objectives, data splits, builder params)."""


class StrategyError(SelfImproveError):
    """An improvement strategy could not produce a candidate."""


class DivergedError(StrategyError):
    """Training produced a NaN or infinite loss or weights; the candidate is unusable."""


class BudgetExceededError(StrategyError):
    """A strategy ran past its budget (epochs or seconds) and was stopped."""
