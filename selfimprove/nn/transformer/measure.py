"""Measurements of a language model: token loss, perplexity, parameters, latency.

Perplexity is ``exp`` of the mean next-token negative log-likelihood (nats) over held-out
windows (:meth:`TokenData.windows`: every token is predicted once, from the tokens before it in
its window). Latency is timed as :class:`selfimprove.measure.evaluation.Evaluator` does: one
intra-op thread, a warm-up, repeats interleaved across the models compared (a burst of
machine load hits all of them alike), median of the repeats.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from selfimprove.errors import ConfigError
from selfimprove.nn.runtime import single_thread

__all__ = [
    "count_parameters",
    "mean_nll",
    "measure_latency",
    "perplexity",
    "sequence_nll",
    "token_nll",
]


def _logits(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    out = model(input_ids=input_ids)
    logits: torch.Tensor = out.logits if hasattr(out, "logits") else out
    return logits


def token_nll(model: nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """Next-token negative log-likelihood of each target token.

    Args:
        model: A causal LM (``GPT2LMHeadModel`` or anything returning logits).
        windows: ``(B, T + 1)`` token ids; inputs are ``[:, :-1]``, targets ``[:, 1:]``.

    Returns:
        ``(B, T)`` losses in nats (differentiable when grad is enabled).
    """
    device = next(model.parameters()).device
    windows = windows.to(device)
    logits = _logits(model, windows[:, :-1])  # (B, T, V)
    nll = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), windows[:, 1:].reshape(-1), reduction="none"
    )
    return nll.view(windows.shape[0], -1)  # (B, T)


def sequence_nll(model: nn.Module, windows: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss of each window: ``(B,)`` nats."""
    return token_nll(model, windows).mean(dim=1)


@torch.no_grad()
def mean_nll(model: nn.Module, windows: torch.Tensor, batch: int = 32) -> float:
    """Mean next-token loss over all target tokens of ``windows`` (eval mode, no grad).

    Raises:
        ConfigError: No windows.
    """
    if len(windows) == 0:
        raise ConfigError("mean_nll needs at least one window.")
    was_training = model.training
    model.eval()
    try:
        total, count = 0.0, 0
        for i in range(0, len(windows), batch):
            nll = token_nll(model, windows[i : i + batch])  # (b, T)
            total += float(nll.double().sum())
            count += nll.numel()
    finally:
        model.train(was_training)
    return total / count


def perplexity(model: nn.Module, windows: torch.Tensor, batch: int = 32) -> float:
    """``exp`` of :func:`mean_nll`; ``inf`` if the loss is not finite."""
    nll = mean_nll(model, windows, batch)
    return math.exp(nll) if math.isfinite(nll) and nll < 700 else math.inf


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters (tied weights, like GPT-2's embedding and head, counted once)."""
    return sum(p.numel() for p in model.parameters())


def _sync(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


@torch.inference_mode()
def measure_latency(
    models: Sequence[nn.Module], input_ids: torch.Tensor, *, repeats: int = 20, warmup: int = 3
) -> list[np.ndarray]:
    """Time forward passes of ``models`` side by side.

    Args:
        models: Models to compare (eval mode is set; the caller's mode is restored).
        input_ids: ``(B, T)`` token ids fed to every model.
        repeats: Timed calls per model, interleaved across models.
        warmup: Untimed calls per model first.

    Returns:
        Per model, the ``(repeats,)`` call times in milliseconds.

    Raises:
        ConfigError: ``repeats`` < 3.
    """
    if repeats < 3:
        raise ConfigError(f"latency repeats must be >= 3, but got {repeats=}.")
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    times: list[list[float]] = [[] for _ in models]
    try:
        with single_thread():
            for m in models:
                for _ in range(warmup):
                    m(input_ids=input_ids)
            for _ in range(repeats):
                for i, m in enumerate(models):
                    _sync(input_ids)
                    t0 = time.perf_counter()
                    m(input_ids=input_ids)
                    _sync(input_ids)  # CUDA runs asynchronously: wait for the work to finish
                    times[i].append((time.perf_counter() - t0) * 1e3)
    finally:
        for m, mode in zip(models, modes, strict=True):
            m.train(mode)
    return [np.asarray(t) for t in times]
