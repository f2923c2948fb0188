"""Seeded randomness: every random component owns a generator derived from explicit keys.

An experiment's seed is derived from (base seed, cycle, model, strategy), never from the order in
which experiments run or finish, so concurrency cannot change decisions.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["derive_seed", "numpy_rng", "torch_seeded"]


def derive_seed(*keys: object) -> int:
    """A stable 63-bit seed from any keys (same keys, same seed, on every machine)."""
    text = "\x1f".join(repr(k) for k in keys)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def numpy_rng(*keys: object) -> np.random.Generator:
    """A NumPy generator seeded from ``keys``."""
    return np.random.default_rng(derive_seed(*keys))


@contextlib.contextmanager
def torch_seeded(seed: int) -> Iterator[torch.Generator]:
    """Run a block with torch's global RNG forked and seeded, yielding a matching generator.

    Modules such as ``nn.Dropout`` and ``nn.init`` draw from the global generator; forking it
    keeps those draws reproducible without leaking state to the caller.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        yield gen
