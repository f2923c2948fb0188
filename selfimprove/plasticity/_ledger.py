"""A plasticity run in the one ledger: a model, an experiment per cycle, a version per kept one.

Per run, :meth:`PlasticityLedger.open` adds a model row (family ``gpt2``, named
``<model>:<run folder>``, task ``external:language-model:<corpus>``: the improvement loop
leaves external models alone, see :data:`selfimprove.tasks.EXTERNAL_TASK_PREFIX`) and its
first version, the starting checkpoint (``cycle_000``), as incumbent.
:meth:`~PlasticityLedger.record_cycle` adds one experiment per cycle (strategy
``plasticity``, decision promote or reject with the rule's reason, the perplexities and head
counts in its statistics) and, for a kept cycle, a version pointing at the checkpoint the run
wrote, with its sha256, which becomes the incumbent. :meth:`~PlasticityLedger.finish` adds the
fine-tuned reference's perplexity to the run's experiments. ``selfimprove history`` and
``selfimprove export`` read them like any other experiment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfimprove.measure.lm_judge import CycleVerdict
from selfimprove.nn.transformer.checkpoint import SavedModel
from selfimprove.plasticity._config import CycleOutcome
from selfimprove.store import Store
from selfimprove.store.records import ExperimentRecord, ExperimentStatus, VersionStatus
from selfimprove.tasks import EXTERNAL_TASK_PREFIX

__all__ = ["FAMILY", "STRATEGY", "PlasticityLedger"]

#: The model family recorded when the caller names none, and the experiment strategy
#: plasticity records under.
FAMILY = "gpt2"
STRATEGY = "plasticity"


def _unique_name(store: Store, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``… if a model already has that name."""
    name, n = base, 1
    while store.find_model(name) is not None:
        n += 1
        name = f"{base}-{n}"
    return name


def _version_fields(saved: SavedModel) -> dict[str, Any]:
    return {
        "checkpoint_path": str(saved.weights),
        "manifest_path": str(saved.manifest),
        "sha256": saved.sha256,
        "size_bytes": saved.weights.stat().st_size,
    }


def cycle_statistics(
    outcome: CycleOutcome,
    verdict: CycleVerdict,
    start_perplexity: float,
    reference_perplexity: float | None = None,
) -> dict[str, Any]:
    """The figures an experiment row keeps of a cycle (``before``/``after``: perplexity;
    ``cycle_reference_perplexity``: the unpruned start fine-tuned with the same steps)."""
    return {
        "metric": "perplexity",
        "before": outcome.perplexity_before,
        "after": outcome.perplexity_after,
        "relative_improvement": 1 - outcome.perplexity_after / outcome.perplexity_before,
        "perplexity_before": outcome.perplexity_before,
        "perplexity_pruned": outcome.perplexity_pruned,
        "perplexity_after": outcome.perplexity_after,
        "start_perplexity": start_perplexity,
        "cycle_reference_perplexity": reference_perplexity,
        "limit": verdict.limit,
        "margin": verdict.margin,
        "test_after": outcome.test_perplexity_after,
        "degeneration": outcome.degeneration,
        "level": outcome.pruning_level,
        "growth_ratio": outcome.growth_ratio,
        "heads_before": outcome.heads_before,
        "heads_removed": outcome.heads_pruned,
        "heads_grown": outcome.heads_grown,
        "heads_after": outcome.heads_after,
        "parameters_after": outcome.parameters_after,
        "reward": outcome.reward,
    }


@dataclass
class PlasticityLedger:
    """The store rows of one run (made by :meth:`open`).

    Attributes:
        store: The ledger written to (not closed here).
        model_id: The run's model row.
        run: The run folder's name.
        incumbent_version_id: The version of the model as last accepted.
        experiments: Ids and statistics of the cycles recorded so far.
    """

    store: Store
    model_id: int
    run: str
    incumbent_version_id: int
    experiments: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        store: Store,
        *,
        model_name: str,
        dataset: str,
        run_dir: Path,
        start: dict[str, Any],
        saved: SavedModel,
        family: str = FAMILY,
    ) -> PlasticityLedger:
        """Add the run's model and its starting version (the incumbent).

        Args:
            store: The ledger.
            model_name: The model optimised (``tiny``, a GPT-2 name or folder).
            dataset: The corpus name.
            run_dir: The run folder.
            start: Measurements of the starting model (heads, parameters, perplexity…).
            saved: The starting checkpoint.
            family: The attention family (``gpt2``, ``llama``), recorded as the model's family.

        Returns:
            The ledger of the run.
        """
        base = f"{Path(model_name).name or model_name}:{run_dir.name}"
        with store.batch():
            model = store.add_model(
                _unique_name(store, base),
                task=f"{EXTERNAL_TASK_PREFIX}language-model:{dataset}",
                family=family,
                description=f"plasticity run {run_dir} ({model_name} on {dataset})",
            )
            version = store.add_version(
                model_id=model.id,
                number=1,
                parent_id=None,
                status=VersionStatus.INCUMBENT,
                strategy=STRATEGY,
                origin="start",
                params={"run": run_dir.name, "cycle": 0},
                metrics={k: v for k, v in start.items() if k != "degeneration_report"},
                **_version_fields(saved),
            )
        return cls(store, model.id, run_dir.name, version.id)

    def record_cycle(
        self,
        outcome: CycleOutcome,
        verdict: CycleVerdict,
        *,
        seed: int,
        start_perplexity: float,
        saved: SavedModel | None,
        reference_perplexity: float | None = None,
    ) -> ExperimentRecord:
        """Add one cycle's experiment and, if it was kept, its version (the new incumbent).

        Args:
            outcome: What the cycle did and measured.
            verdict: The rule's decision and reason.
            seed: The cycle's seed.
            start_perplexity: The run's starting validation perplexity (the rule's reference).
            saved: The kept cycle's checkpoint (``None`` for a rejected cycle).
            reference_perplexity: The unpruned start fine-tuned with the cycle's steps, if
                the rule judged against it.

        Returns:
            The experiment as stored.
        """
        params = {
            "run": self.run,
            "pruning_strategy": outcome.pruning_strategy,
            "pruning_level": outcome.pruning_level,
            "growth_strategy": outcome.growth_strategy,
            "growth_ratio": outcome.growth_ratio,
        }
        statistics = cycle_statistics(outcome, verdict, start_perplexity, reference_perplexity)
        with self.store.batch():
            exp = self.store.add_experiment(
                model_id=self.model_id,
                strategy=STRATEGY,
                objective="perplexity",
                params=params,
                hypothesis=outcome.choice,
                cycle=outcome.cycle,
                seed=seed,
                incumbent_version_id=self.incumbent_version_id,
                status=ExperimentStatus.RUNNING,
            )
            candidate: int | None = None
            if saved is not None:
                version = self.store.add_version(
                    model_id=self.model_id,
                    number=self.store.reserve_version_number(self.model_id),
                    parent_id=self.incumbent_version_id,
                    status=VersionStatus.INCUMBENT,
                    strategy=STRATEGY,
                    origin=f"cycle {outcome.cycle}",
                    params=params,
                    metrics={
                        "perplexity": outcome.perplexity_after,
                        "test_perplexity": outcome.test_perplexity_after,
                        "degeneration": outcome.degeneration,
                        "heads": outcome.heads_after,
                        "heads_per_layer": outcome.heads_per_layer,
                        "parameters": outcome.parameters_after,
                    },
                    **_version_fields(saved),
                )
                candidate = self.incumbent_version_id = version.id
            record = self.store.update_experiment(
                exp.id,
                status=ExperimentStatus.COMPLETED,
                decision=verdict.decision,
                reason=verdict.reason,
                statistics=statistics,
                candidate_version_id=candidate,
            )
        self.experiments.append((exp.id, statistics))
        return record

    def finish(self, reference: dict[str, Any] | None) -> None:
        """Add the fine-tuned reference's perplexity to every cycle of the run (if measured)."""
        if reference is None or not self.experiments:
            return
        with self.store.batch():
            for exp_id, statistics in self.experiments:
                statistics["reference_perplexity"] = reference["perplexity"]
                statistics["reference_test_perplexity"] = reference["test_perplexity"]
                self.store.update_experiment(exp_id, statistics=statistics)
