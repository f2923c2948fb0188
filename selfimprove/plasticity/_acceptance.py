"""The acceptance rule of a cycle: within the tolerance of the start *and* of the reference.

Extra fine-tuning alone lowers perplexity, so a cycle judged only against the run's start can
keep a model that lost much of what its steps would have bought the unpruned model. The
*reference* is the unpruned start fine-tuned with exactly the steps and batches the candidate
has received (the kept cycles' and this one's; :mod:`selfimprove.plasticity._reference`).
:func:`judge_candidate` keeps a cycle only if

- its validation perplexity is at most ``reference * (1 + tolerance)`` and at most
  ``start * (1 + tolerance)`` (:func:`selfimprove.measure.lm_judge.judge_cycle` against each;
  the start still binds where fine-tuning made the reference worse), and
- its degeneration score is at most the threshold.

A cycle that only learns (the search is resolved, nothing is pruned or grown) decides no
architecture: :func:`judge_learning` keeps it when it lowered validation perplexity without
degenerating, whatever the reference did (rolling it back would only throw the steps away and
leave the model further behind).

The verdict's limit is the lower of the two limits, its margin the smaller share of tolerance
left. A pure function of plain numbers.
"""

from __future__ import annotations

from selfimprove.measure.lm_judge import CycleFigures, CycleVerdict, judge_cycle
from selfimprove.store.records import Decision

__all__ = ["judge_candidate", "judge_learning"]


def judge_candidate(
    *,
    perplexity_start: float,
    perplexity_reference: float | None,
    perplexity_after: float,
    degeneration: float,
    tolerance: float,
    degeneration_threshold: float,
    reference_steps: int = 0,
) -> CycleVerdict:
    """Keep or undo a cycle (see the module docstring).

    Args:
        perplexity_start: Validation perplexity of the run's starting model.
        perplexity_reference: The unpruned start fine-tuned with the candidate's steps and
            batches, or ``None`` (judged against the start alone).
        perplexity_after: The candidate's.
        degeneration: The candidate's degeneration score.
        tolerance: Relative perplexity increase allowed over each baseline.
        degeneration_threshold: Highest degeneration score allowed.
        reference_steps: Fine-tuning steps the reference received (for the reason).

    Returns:
        The decision, the reason with the figures, the binding limit and the unused tolerance.
    """
    against_start = judge_cycle(
        CycleFigures(
            perplexity_start=perplexity_start,
            perplexity_after=perplexity_after,
            degeneration=degeneration,
            tolerance=tolerance,
            degeneration_threshold=degeneration_threshold,
        )
    )
    if perplexity_reference is None:
        return against_start
    against_ref = judge_cycle(
        CycleFigures(
            perplexity_start=perplexity_reference,
            perplexity_after=perplexity_after,
            degeneration=degeneration,
            tolerance=tolerance,
            degeneration_threshold=degeneration_threshold,
        )
    )
    ok_ref = perplexity_after <= against_ref.limit
    ok_start = perplexity_after <= against_start.limit
    ok_deg = degeneration <= degeneration_threshold
    reason = (
        f"perplexity {perplexity_after:.4g} {'<=' if ok_ref else '>'} {against_ref.limit:.4g} "
        f"(unpruned reference fine-tuned the same {reference_steps} steps "
        f"{perplexity_reference:.4g} + {tolerance:.0%}) and {'<=' if ok_start else '>'} "
        f"{against_start.limit:.4g} (start {perplexity_start:.4g} + {tolerance:.0%}); "
        f"degeneration {degeneration:.3f} {'<=' if ok_deg else '>'} {degeneration_threshold:.3f}"
    )
    accepted = against_start.accepted and against_ref.accepted
    return CycleVerdict(
        decision=Decision.PROMOTE if accepted else Decision.REJECT,
        reason=reason,
        limit=min(against_start.limit, against_ref.limit),
        margin=min(against_start.margin, against_ref.margin),
    )


def judge_learning(
    *,
    perplexity_before: float,
    perplexity_after: float,
    degeneration: float,
    degeneration_threshold: float,
    rule: CycleVerdict,
) -> CycleVerdict:
    """Keep or undo a learn-only cycle: kept when it lowered perplexity without degenerating.

    Args:
        perplexity_before: Validation perplexity of the model the cycle started from.
        perplexity_after: The candidate's.
        degeneration: The candidate's degeneration score.
        degeneration_threshold: Highest degeneration score allowed.
        rule: :func:`judge_candidate`'s verdict on the same candidate (its limit and margin
            are kept; its figures are quoted in the reason).

    Returns:
        The decision and its reason.
    """
    better = perplexity_after <= perplexity_before
    ok_deg = degeneration <= degeneration_threshold
    reason = (
        f"learn only: perplexity {perplexity_after:.4g} {'<=' if better else '>'} "
        f"{perplexity_before:.4g} before the cycle; degeneration {degeneration:.3f} "
        f"{'<=' if ok_deg else '>'} {degeneration_threshold:.3f} (the pruning rule: {rule.reason})"
    )
    return CycleVerdict(
        decision=Decision.PROMOTE if better and ok_deg else Decision.REJECT,
        reason=reason,
        limit=rule.limit,
        margin=rule.margin,
    )
