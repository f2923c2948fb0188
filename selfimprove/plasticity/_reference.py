"""The unpruned reference a run is judged against, advanced alongside the pruned model.

Fine-tuning alone lowers perplexity; a pruned model is only as good as the unpruned model would
have been after the *same* fine-tuning. :class:`ReferenceTrack` keeps that model: the run's start
fine-tuned cycle by cycle with each cycle's seed and place in the run's learning-rate schedule.
For a cycle it fine-tunes a copy one cycle further and measures it
(:meth:`ReferenceTrack.candidate`); a kept cycle makes that copy the reference
(:meth:`ReferenceTrack.advance`), a rolled-back one leaves it pending: the reference receives
exactly the steps, batches and learning rates the final model received.

A cycle's fine-tuning seed depends on the run's seed and the cycle's number
(:func:`finetune_seed`): a cycle retried after a rollback fine-tunes on new batches.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from selfimprove.measure.finetune import FinetuneConfig, finetune_
from selfimprove.seeding import derive_seed

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

    from selfimprove.plasticity._workbench import Workbench

__all__ = ["ReferenceTrack", "finetune_seed"]


def finetune_seed(run_seed: int, cycle: int) -> int:
    """The fine-tuning seed of cycle ``cycle`` (from 1) of a run seeded ``run_seed``."""
    return derive_seed(run_seed, "finetune", cycle)


@dataclass
class ReferenceTrack:
    """The unpruned start fine-tuned with the kept cycles' steps, seeds and rates.

    Attributes:
        model: The reference model (unpruned).
        perplexity: Its validation perplexity.
        steps: Fine-tuning steps it received.
        seeds: Their seeds, in order.
    """

    model: GPT2LMHeadModel
    perplexity: float
    steps: int = 0
    seeds: list[int] = field(default_factory=list)
    _pending: tuple[int, FinetuneConfig, GPT2LMHeadModel, float, int] | None = field(
        default=None, repr=False
    )

    @classmethod
    def start(cls, model: GPT2LMHeadModel, perplexity: float) -> ReferenceTrack:
        """A track that begins at ``model`` (copied; left alone)."""
        return cls(model=copy.deepcopy(model).eval(), perplexity=perplexity)

    def candidate(self, seed: int, bench: Workbench, config: FinetuneConfig) -> tuple[float, int]:
        """The reference one cycle further: fine-tuned with ``seed`` and ``config`` (cached).

        Args:
            seed: The cycle's fine-tuning seed.
            bench: Data and the perplexity measurement.
            config: The cycle's fine-tuning settings.

        Returns:
            Its validation perplexity and the steps it received in total.
        """
        if self._pending is not None and self._pending[:2] == (seed, config):
            return self._pending[3], self._pending[4]
        model = copy.deepcopy(self.model)
        steps = 0
        if config.steps > 0:
            steps = finetune_(model, bench.data, config, seed=seed).steps
        model.eval()
        ppl = bench.perplexity(model) if steps else self.perplexity
        self._pending = (seed, config, model, ppl, self.steps + steps)
        return ppl, self.steps + steps

    def advance(self, seed: int) -> None:
        """The cycle fine-tuned with ``seed`` was kept: its reference becomes the track's.

        Raises:
            RuntimeError: No candidate of that seed was measured (a bug in the caller).
        """
        if self._pending is None or self._pending[0] != seed:
            raise RuntimeError(f"no reference candidate for seed {seed} was measured")
        _, _, self.model, self.perplexity, self.steps = self._pending
        self.seeds.append(seed)
        self._pending = None
