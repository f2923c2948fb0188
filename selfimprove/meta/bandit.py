"""`StrategyBandit`: Thompson sampling over strategies, one posterior per (context, strategy).

A context is a (weakness kind, model family) pair; an arm is a strategy name; a reward is the
realised gain per compute second (0 for a rejected or failed experiment). Each arm's mean reward
has a Normal-Inverse-Gamma posterior (conjugate for Gaussian rewards of unknown mean and
variance), so an arm with few, noisy rewards keeps getting tried and one that keeps paying
wins. Written by hand: it is twenty lines of conjugate updates, and the libraries that have it
(e.g. scikit-learn has none; ``mabwiser``) bring far more than this needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from selfimprove.errors import ConfigError
from selfimprove.seeding import derive_seed

__all__ = ["ArmPosterior", "StrategyBandit"]


@dataclass(frozen=True)
class ArmPosterior:
    """Sufficient statistics of one arm's rewards and the prior they update."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations (Welford)

    def add(self, reward: float) -> ArmPosterior:
        n = self.n + 1
        delta = reward - self.mean
        mean = self.mean + delta / n
        return ArmPosterior(n, mean, self.m2 + delta * (reward - mean))

    def merge(self, other: ArmPosterior) -> ArmPosterior:
        """The statistics of both samples together (Chan et al.'s parallel update)."""
        n = self.n + other.n
        if n == 0:
            return self
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        return ArmPosterior(n, mean, self.m2 + other.m2 + delta**2 * self.n * other.n / n)


class StrategyBandit:
    """Thompson sampling over strategies per context.

    Args:
        seed: Seeds every draw (draw ``k`` of a context uses ``derive_seed(seed, context, k)``,
            so a replay gives the same choices).
        prior_mean: Prior mean reward (0: no gain expected until seen).
        prior_scale: Prior spread of rewards (gain per reward_cost unit: 10 epochs spent).
        prior_strength: How many pseudo-observations the prior mean is worth.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        prior_mean: float = 0.0,
        prior_scale: float = 0.05,
        prior_strength: float = 1.0,
    ) -> None:
        if prior_scale <= 0 or prior_strength <= 0:
            raise ConfigError(
                f"prior_scale and prior_strength must be > 0, got {prior_scale}, {prior_strength}."
            )
        self.seed = seed
        self.prior_mean = prior_mean
        self.prior_scale = prior_scale
        self.prior_strength = prior_strength
        self._arms: dict[tuple[str, str], dict[str, ArmPosterior]] = {}
        self._draws: dict[tuple[str, str], int] = {}

    @staticmethod
    def _key(context: Sequence[str]) -> tuple[str, str]:
        if len(context) != 2:
            raise ConfigError(f"a bandit context is (weakness kind, family), got {context!r}.")
        return (str(context[0]), str(context[1]))

    def update(self, context: Sequence[str], arm: str, reward: float) -> None:
        """Record a realised reward (non-finite rewards count as 0)."""
        key = self._key(context)
        arms = self._arms.setdefault(key, {})
        arms[arm] = arms.get(arm, ArmPosterior()).add(reward if math.isfinite(reward) else 0.0)

    def _posterior(self, post: ArmPosterior) -> tuple[float, float, float, float]:
        """Normal-Inverse-Gamma parameters (mu_n, kappa_n, alpha_n, beta_n)."""
        k0, mu0 = self.prior_strength, self.prior_mean
        a0, b0 = 1.0, self.prior_scale**2
        kn = k0 + post.n
        mun = (k0 * mu0 + post.n * post.mean) / kn
        an = a0 + post.n / 2
        bn = b0 + 0.5 * post.m2 + k0 * post.n * (post.mean - mu0) ** 2 / (2 * kn)
        return mun, kn, an, bn

    def sample(
        self, context: Sequence[str], arms: Sequence[str], *, temperature: float = 1.0
    ) -> dict[str, float]:
        """One Thompson draw of each arm's mean reward (``temperature`` scales the spread)."""
        if not arms:
            raise ConfigError("the bandit needs at least one strategy to choose from.")
        key = self._key(context)
        k = self._draws.get(key, 0)
        self._draws[key] = k + 1
        rng = np.random.default_rng(derive_seed(self.seed, key, k))
        posts = self._arms.get(key, {})
        draws = {}
        for arm in arms:  # fixed order: the draws do not depend on dict order
            mun, kn, an, bn = self._posterior(posts.get(arm, ArmPosterior()))
            sigma2 = bn / rng.gamma(an)  # inverse-gamma draw
            draws[arm] = float(mun + temperature * math.sqrt(sigma2 / kn) * rng.standard_normal())
        return draws

    def choose(
        self, context: Sequence[str], arms: Sequence[str], *, temperature: float = 1.0
    ) -> tuple[str, dict[str, float]]:
        """The arm with the highest Thompson draw, and all draws (for the record)."""
        draws = self.sample(context, arms, temperature=temperature)
        best = max(arms, key=lambda a: (draws[a], -list(arms).index(a)))
        return best, draws

    def choose_many(
        self, context: Sequence[str], arms: Sequence[str], n: int, *, temperature: float = 1.0
    ) -> list[str]:
        """``n`` independent Thompson choices among ``arms`` at once (one per weakness served
        in a plan), each as :meth:`choose` makes it — the arm with the highest draw, the first
        on a tie — from one generator: the call is one draw of the context's sequence."""
        if not arms:
            raise ConfigError("the bandit needs at least one strategy to choose from.")
        if n <= 0:
            return []
        key = self._key(context)
        k = self._draws.get(key, 0)
        self._draws[key] = k + 1
        rng = np.random.default_rng(derive_seed(self.seed, key, k))
        posts = self._arms.get(key, {})
        mun, kn, an, bn = (
            np.array(v)
            for v in zip(
                *(self._posterior(posts.get(a, ArmPosterior())) for a in arms), strict=True
            )
        )
        sigma2 = bn / rng.gamma(an, size=(n, len(arms)))  # inverse-gamma draws
        draws = mun + temperature * np.sqrt(sigma2 / kn) * rng.standard_normal((n, len(arms)))
        return [arms[i] for i in np.argmax(draws, axis=1)]

    def estimates(self, context: Sequence[str]) -> dict[str, dict[str, float]]:
        """Posterior mean and count of each arm seen in ``context``."""
        out = {}
        for arm, post in self._arms.get(self._key(context), {}).items():
            mun, _, _, _ = self._posterior(post)
            out[arm] = {"mean": mun, "n": float(post.n), "observed_mean": post.mean}
        return out

    def expected(self, context: Sequence[str], arm: str) -> float:
        """Expected reward of ``arm`` in ``context``: its posterior mean there, or — for a
        context where it was never tried — its posterior mean pooled over every context (what
        it has earned elsewhere), or the prior mean when it was never tried at all."""
        post = self._arms.get(self._key(context), {}).get(arm)
        if post is None or post.n == 0:
            pooled = ArmPosterior()
            for arms in self._arms.values():
                if arm in arms:
                    pooled = pooled.merge(arms[arm])
            post = pooled
        return self._posterior(post)[0]

    def contexts(self) -> list[tuple[str, str]]:
        return sorted(self._arms)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "seed": self.seed,
            "prior": [self.prior_mean, self.prior_scale, self.prior_strength],
            "arms": [
                [list(key), arm, p.n, p.mean, p.m2]
                for key, arms in sorted(self._arms.items())
                for arm, p in sorted(arms.items())
            ],
            "draws": [[list(k), v] for k, v in sorted(self._draws.items())],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StrategyBandit:
        mean, scale, strength = data.get("prior", [0.0, 0.05, 1.0])
        b = cls(
            int(data.get("seed", 0)), prior_mean=mean, prior_scale=scale, prior_strength=strength
        )
        for key, arm, n, m, m2 in data.get("arms", []):
            b._arms.setdefault((key[0], key[1]), {})[arm] = ArmPosterior(
                int(n), float(m), float(m2)
            )
        for key, v in data.get("draws", []):
            b._draws[(key[0], key[1])] = int(v)
        return b
