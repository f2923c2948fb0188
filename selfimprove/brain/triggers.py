"""`GeneticTriggerSystem`: a population of triggers that evolves by the gains it brings.

A trigger is a genome: conditions on the environment vector (``error_rate > 0.3``, ...) and an
action — a multiplicative boost to one strategy family (``training``, ``optimisation``,
``architecture``, ``distillation``). When its conditions hold it is *active*, and tasks of its
family get its boost in their priority.

Fitness is measured, not assumed: a trigger's fitness is the mean realised gain of the
experiments it boosted minus the mean realised gain of the experiments it did not boost (over
what it has seen; 0 until it has boosted something). Evolution keeps the fittest (elitism),
fills the rest by tournament selection, uniform crossover of conditions, and mutation of
thresholds, operators, families and boosts — all drawn from one seeded generator.

Hand-written rather than DEAP or pygad: the genome is a small variable-length rule whose
fitness arrives one experiment at a time from the loop; those libraries want a fixed-length
vector and a fitness function to call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from selfimprove.brain.environment import FEATURES
from selfimprove.errors import ConfigError
from selfimprove.seeding import derive_seed

__all__ = ["FAMILIES", "Condition", "GeneticTriggerSystem", "Trigger"]

FAMILIES = ("training", "optimisation", "architecture", "distillation")


@dataclass(frozen=True)
class Condition:
    """``feature op threshold`` on the environment vector."""

    feature: str
    op: str  # "<" or ">"
    threshold: float

    def holds(self, env: Mapping[str, float]) -> bool:
        value = env.get(self.feature, 0.0)
        return value > self.threshold if self.op == ">" else value < self.threshold

    def __str__(self) -> str:
        return f"{self.feature} {self.op} {self.threshold:.2f}"


@dataclass(frozen=True)
class Trigger:
    """A genome: conditions (all must hold) and the family it boosts by ``boost``."""

    id: str
    conditions: tuple[Condition, ...]
    family: str
    boost: float
    generation: int = 0
    parents: tuple[str, ...] = ()

    def active(self, env: Mapping[str, float]) -> bool:
        return all(c.holds(env) for c in self.conditions)

    def describe(self) -> str:
        when = " and ".join(map(str, self.conditions)) or "always"
        return f"if {when}: boost {self.family} ×{self.boost:.2f}"


@dataclass
class _Record:
    boosted_sum: float = 0.0
    boosted_n: int = 0
    other_sum: float = 0.0
    other_n: int = 0


@dataclass
class _State:
    records: dict[str, _Record] = field(default_factory=dict)


class GeneticTriggerSystem:
    """A seeded, evolving population of triggers.

    Args:
        population_size: Triggers alive at once (>= 4).
        seed: Seeds the first population and every evolution step.
        elite: Fittest triggers copied unchanged into the next generation.
    """

    def __init__(self, population_size: int = 12, *, seed: int = 0, elite: int = 2) -> None:
        if population_size < 4:
            raise ConfigError(f"population_size must be >= 4, got {population_size}.")
        if not 0 <= elite < population_size:
            raise ConfigError(f"elite must be in [0, population_size), got {elite}.")
        self.population_size = population_size
        self.seed = seed
        self.elite = elite
        self.generation = 0
        self._next_id = 0
        rng = np.random.default_rng(derive_seed(seed, "triggers", 0))
        self.population: list[Trigger] = [self._random(rng) for _ in range(population_size)]
        self._state = _State()

    # ------------------------------------------------------------------ genomes
    def _new_id(self) -> str:
        self._next_id += 1
        return f"t{self._next_id}"

    @staticmethod
    def _random_condition(rng: np.random.Generator) -> Condition:
        return Condition(
            str(rng.choice(FEATURES)), str(rng.choice(["<", ">"])), float(rng.uniform(0.05, 0.95))
        )

    def _random(self, rng: np.random.Generator) -> Trigger:
        n = int(rng.integers(1, 3))
        return Trigger(
            id=self._new_id(),
            conditions=tuple(self._random_condition(rng) for _ in range(n)),
            family=str(rng.choice(FAMILIES)),
            boost=float(rng.uniform(1.1, 2.0)),
            generation=self.generation,
        )

    # ------------------------------------------------------------------ use
    def get_active_triggers(self, environment: Mapping[str, float]) -> list[Trigger]:
        """Triggers whose conditions all hold in ``environment``."""
        return [t for t in self.population if t.active(environment)]

    def boost(
        self,
        family: str,
        environment: Mapping[str, float],
        active: Sequence[Trigger] | None = None,
    ) -> tuple[float, list[str]]:
        """Product of the boosts of active triggers for ``family``, and their ids (``active``:
        :meth:`get_active_triggers` of ``environment`` when already known, e.g. once per plan).
        """
        ids, mult = [], 1.0
        for t in self.get_active_triggers(environment) if active is None else active:
            if t.family == family:
                mult *= t.boost
                ids.append(t.id)
        return mult, ids

    def record_outcome(self, boosted_by: Sequence[str], gain: float) -> None:
        """Credit an experiment's realised gain to the triggers that boosted it (and count it
        as a non-boosted outcome for every other living trigger)."""
        boosted = set(boosted_by)
        for t in self.population:
            rec = self._state.records.setdefault(t.id, _Record())
            if t.id in boosted:
                rec.boosted_sum += gain
                rec.boosted_n += 1
            else:
                rec.other_sum += gain
                rec.other_n += 1

    def fitness(self, trigger_id: str) -> float:
        """Mean gain when boosting minus mean gain otherwise (0 until it has boosted)."""
        rec = self._state.records.get(trigger_id)
        if rec is None or rec.boosted_n == 0:
            return 0.0
        other = rec.other_sum / rec.other_n if rec.other_n else 0.0
        return rec.boosted_sum / rec.boosted_n - other

    def times_boosted(self, trigger_id: str) -> int:
        rec = self._state.records.get(trigger_id)
        return rec.boosted_n if rec else 0

    # ------------------------------------------------------------------ evolution
    def evolve(self) -> list[Trigger]:
        """One generation: elitism, tournament selection, crossover, mutation. Returns the new
        population. Fitness records of survivors are kept; children start fresh."""
        self.generation += 1
        rng = np.random.default_rng(derive_seed(self.seed, "triggers", self.generation))
        ranked = sorted(self.population, key=lambda t: (-self.fitness(t.id), t.id))
        nxt = ranked[: self.elite]

        def pick() -> Trigger:
            a, b = rng.choice(len(ranked), size=2, replace=False)
            ta, tb = ranked[int(a)], ranked[int(b)]
            return ta if self.fitness(ta.id) >= self.fitness(tb.id) else tb

        while len(nxt) < self.population_size:
            p1, p2 = pick(), pick()
            pool = list(p1.conditions) + list(p2.conditions)
            keep = [c for c in pool if rng.random() < 0.5] or [pool[int(rng.integers(len(pool)))]]
            child = Trigger(
                id=self._new_id(),
                conditions=tuple(keep[:3]),
                family=p1.family if rng.random() < 0.5 else p2.family,
                boost=float((p1.boost + p2.boost) / 2),
                generation=self.generation,
                parents=(p1.id, p2.id),
            )
            nxt.append(self._mutate(child, rng))
        alive = {t.id for t in nxt}
        self._state.records = {k: v for k, v in self._state.records.items() if k in alive}
        self.population = nxt
        return list(nxt)

    def _mutate(self, t: Trigger, rng: np.random.Generator, rate: float = 0.3) -> Trigger:
        conds = []
        for c in t.conditions:
            if rng.random() < rate:
                c = replace(c, threshold=float(np.clip(c.threshold + rng.normal(0, 0.15), 0, 1)))
            if rng.random() < rate / 3:
                c = replace(c, op="<" if c.op == ">" else ">")
            conds.append(c)
        if rng.random() < rate / 3:
            conds.append(self._random_condition(rng))
        family = str(rng.choice(FAMILIES)) if rng.random() < rate / 3 else t.family
        boost = float(np.clip(t.boost * np.exp(rng.normal(0, 0.1)), 1.0, 3.0))
        return replace(t, conditions=tuple(conds[:3]), family=family, boost=boost)

    # ------------------------------------------------------------------ reporting & state
    def summary(self) -> list[dict[str, Any]]:
        return [
            {
                "id": t.id,
                "rule": t.describe(),
                "family": t.family,
                "boost": t.boost,
                "generation": t.generation,
                "fitness": self.fitness(t.id),
                "times_boosted": self.times_boosted(t.id),
            }
            for t in self.population
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "seed": self.seed,
            "generation": self.generation,
            "next_id": self._next_id,
            "population": [
                {
                    "id": t.id,
                    "conditions": [[c.feature, c.op, c.threshold] for c in t.conditions],
                    "family": t.family,
                    "boost": t.boost,
                    "generation": t.generation,
                    "parents": list(t.parents),
                }
                for t in self.population
            ],
            "records": {
                k: [r.boosted_sum, r.boosted_n, r.other_sum, r.other_n]
                for k, r in self._state.records.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, elite: int = 2) -> GeneticTriggerSystem:
        pop = data["population"]
        g = cls(max(4, len(pop)), seed=int(data["seed"]), elite=elite)
        g.generation = int(data["generation"])
        g._next_id = int(data["next_id"])
        g.population = [
            Trigger(
                id=t["id"],
                conditions=tuple(Condition(f, op, float(th)) for f, op, th in t["conditions"]),
                family=t["family"],
                boost=float(t["boost"]),
                generation=int(t["generation"]),
                parents=tuple(t.get("parents", ())),
            )
            for t in pop
        ]
        g._state.records = {
            k: _Record(float(a), int(b), float(c), int(d))
            for k, (a, b, c, d) in data.get("records", {}).items()
        }
        return g
