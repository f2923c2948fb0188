"""One honest training loop: seeded, adaptive learning rate, early stopping, clipping, NaN guard.

Early stopping watches a holdout carved (seeded) out of the *training* split, never the
validation split: the judge decides on validation, so validation must stay untouched by training
choices, or every candidate would look better there than it is.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from selfimprove.errors import ConfigError, DivergedError
from selfimprove.seeding import torch_seeded
from selfimprove.tasks import Split, Task

__all__ = ["TRAIN_OVERRIDES", "TrainConfig", "TrainResult", "train_"]

logger = logging.getLogger(__name__)

#: The :class:`TrainConfig` fields a strategy's ``params`` may override (epochs, seconds and
#: seed come from the budget and the experiment).
TRAIN_OVERRIDES = (
    "lr",
    "weight_decay",
    "batch_size",
    "optimizer",
    "schedule",
    "patience",
    "clip_norm",
)

SCHEDULES = ("plateau", "cosine", "constant")
OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
        epochs: Maximum epochs.
        lr: Initial learning rate.
        weight_decay: L2 penalty (decoupled for ``adamw``).
        batch_size: Examples per step.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (momentum 0.9).
        schedule: ``"plateau"`` (halve the LR when the holdout loss stalls), ``"cosine"`` or
            ``"constant"``.
        patience: Epochs without holdout improvement before stopping early (0: never stop).
        clip_norm: Gradient-norm clip (``None``: no clipping).
        holdout_fraction: Share of the training split held out for early stopping.
        max_seconds: Wall-clock budget; training stops at the end of the epoch that crosses it.
        seed: Seeds initial shuffles, dropout and the holdout split.
    """

    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    optimizer: str = "adam"
    schedule: str = "plateau"
    patience: int = 5
    clip_norm: float | None = 1.0
    holdout_fraction: float = 0.15
    max_seconds: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, but got {self.epochs=}.")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, but got {self.lr=}.")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, but got {self.weight_decay=}.")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, but got {self.batch_size=}.")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, but got {self.optimizer!r}.")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, but got {self.schedule!r}.")
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0, but got {self.patience=}.")
        if not 0 < self.holdout_fraction < 0.5:
            raise ConfigError(
                f"holdout_fraction must be in (0, 0.5), but got {self.holdout_fraction=}."
            )
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ConfigError(f"max_seconds must be > 0, but got {self.max_seconds=}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """What a training run did.

    Attributes:
        epochs_run: Epochs completed (the compute spent).
        best_epoch: Epoch whose weights were kept (1-based; 0 = the starting weights).
        best_holdout_loss: Holdout loss of the kept weights.
        stopped: ``"epochs"``, ``"early_stopping"`` or ``"time_budget"``.
        seconds: Wall-clock time.
        history: Per-epoch ``{"epoch", "train_loss", "holdout_loss", "lr"}``.
    """

    epochs_run: int
    best_epoch: int
    best_holdout_loss: float
    stopped: str
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def _holdout_split(train: Split, fraction: float, gen: torch.Generator) -> tuple[Split, Split]:
    perm = torch.randperm(len(train), generator=gen)
    n_hold = max(1, round(len(train) * fraction))
    hold, fit = perm[:n_hold], perm[n_hold:]
    return Split(train.x[fit], train.y[fit]), Split(train.x[hold], train.y[hold])


@torch.no_grad()
def _mean_loss(module: nn.Module, task: Task, split: Split, batch: int = 1024) -> float:
    module.eval()
    total, n = 0.0, 0
    for i in range(0, len(split), batch):
        xb, yb = split.x[i : i + batch], split.y[i : i + batch]
        total += float(task.loss(module(xb), yb)) * len(xb)
        n += len(xb)
    return total / n


def _all_finite(module: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def _optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``config`` names (SGD with momentum 0.9; AdamW's decay is decoupled)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _scheduler(opt: torch.optim.Optimizer, config: TrainConfig) -> Any:
    """The LR schedule ``config`` names (``None`` for a constant learning rate)."""
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    return None


def _train_epoch(
    module: nn.Module,
    task: Task,
    fit: Split,
    opt: torch.optim.Optimizer,
    config: TrainConfig,
    epoch: int,
    gen: torch.Generator,
    *,
    check: Callable[[], None] | None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None,
) -> float:
    """One pass over ``fit`` in a seeded order; the mean training loss.

    Raises:
        DivergedError: The loss or a gradient became NaN or infinite.
    """
    module.train()
    order = torch.randperm(len(fit), generator=gen)
    running, seen = 0.0, 0
    for i in range(0, len(fit), config.batch_size):
        if check is not None:
            check()
        idx = order[i : i + config.batch_size]
        xb, yb = fit.x[idx], fit.y[idx]
        opt.zero_grad(set_to_none=True)
        out = module(xb)
        loss = task.loss(out, yb) if loss_fn is None else loss_fn(out, xb, yb)
        if not torch.isfinite(loss):
            raise DivergedError(
                f"training diverged at epoch {epoch}: the loss became "
                f"{float(loss.detach())} "
                f"(lr={opt.param_groups[0]['lr']:.3g}); lower the learning rate."
            )
        loss.backward()
        if config.clip_norm is not None:
            norm = nn.utils.clip_grad_norm_(module.parameters(), config.clip_norm)
            if not torch.isfinite(norm):
                raise DivergedError(
                    f"training diverged at epoch {epoch}: a gradient became NaN or infinite."
                )
        opt.step()
        running += float(loss.detach()) * len(idx)
        seen += len(idx)
    return running / max(seen, 1)


def train_(
    module: nn.Module,
    task: Task,
    config: TrainConfig,
    *,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    check: Callable[[], None] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> TrainResult:
    """Train ``module`` in place on ``task``'s training split; keeps the best holdout weights.

    Args:
        module: The model to train (changed in place: pass a copy to keep the original).
        task: Supplies the training split and the loss.
        config: How to train.
        on_epoch: Called after each epoch with that epoch's history row.
        check: Called before every step; may raise to stop training (budget enforcement).
        loss_fn: Training loss ``(outputs, inputs, targets) -> scalar`` replacing the task's
            (e.g. a distillation loss that also asks a teacher about ``inputs``). Early stopping
            still watches the task's own loss on the holdout.

    Returns:
        What was done, including the epochs actually run.

    Raises:
        DivergedError: The loss, a gradient or a weight became NaN or infinite.
    """
    start = time.perf_counter()
    with torch_seeded(config.seed) as gen:
        fit, holdout = _holdout_split(task.splits().train, config.holdout_fraction, gen)
        params = list(module.parameters())
        opt = _optimizer(params, config)
        sched = _scheduler(opt, config)

        best_loss = _mean_loss(module, task, holdout)
        if not math.isfinite(best_loss):
            raise DivergedError("the starting weights already give a NaN or infinite loss.")
        best_state = copy.deepcopy(module.state_dict())
        best_epoch, since_best, stopped = 0, 0, "epochs"
        history: list[dict[str, float]] = []
        epoch = 0
        for epoch in range(1, config.epochs + 1):
            train_loss = _train_epoch(
                module, task, fit, opt, config, epoch, gen, check=check, loss_fn=loss_fn
            )
            if not _all_finite(module):
                raise DivergedError(f"training diverged at epoch {epoch}: a weight became NaN.")
            hold_loss = _mean_loss(module, task, holdout)
            lr_now = float(opt.param_groups[0]["lr"])
            row = {
                "epoch": float(epoch),
                "train_loss": train_loss,
                "holdout_loss": hold_loss,
                "lr": lr_now,
            }
            history.append(row)
            if on_epoch is not None:
                on_epoch(row)
            if hold_loss < best_loss:
                best_loss, best_epoch, since_best = hold_loss, epoch, 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                since_best += 1
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(hold_loss)
            elif sched is not None:
                sched.step()
            if config.patience and since_best >= config.patience:
                stopped = "early_stopping"
                break
            if config.max_seconds is not None and time.perf_counter() - start > config.max_seconds:
                stopped = "time_budget"
                break
        module.load_state_dict(best_state)
        module.eval()
    seconds = time.perf_counter() - start
    logger.debug(
        "trained %s for %d epochs (%s), best holdout loss %.4g at epoch %d",
        task.name,
        epoch,
        stopped,
        best_loss,
        best_epoch,
    )
    return TrainResult(
        epochs_run=epoch,
        best_epoch=best_epoch,
        best_holdout_loss=best_loss,
        stopped=stopped,
        seconds=seconds,
        history=history,
    )
