"""One plasticity cycle as steps: choose -> prune -> measure -> forecast -> grow -> learn ->
decide -> record.

Each step is a function with one job: it reads the run (:class:`RunContext`, fixed for the
run), the model as last accepted (:class:`RunState`), and what the earlier steps of the cycle
returned; it writes its phase's record to ``metrics.jsonl`` and returns a small frozen result.
Only :func:`decide` (keep or undo) and :func:`adapt` / :func:`record` change the run's state,
and :func:`run_cycle` when a candidate's forecast fails (the search's bracket).

The decisions are pure functions of the cycle's figures, each with its reason:

- how many heads go: :func:`selfimprove.plasticity._search.next_removal`, a search for the
  largest total removal within the tolerance (expand while kept, bisect after a failure, stop
  when the bracket is narrower than one head per layer; the remaining cycles only learn);
- worth fine-tuning: :func:`selfimprove.plasticity._forecast.forecast_gap`, the candidate's
  gap to the same-steps reference forecast from its one-shot damage and the share of damage
  the run's earlier cycles left; a candidate forecast to fail spends no steps, and the same
  cycle tries a smaller one (a forecast bounds the search only within its cycle);
- keep or undo: :func:`selfimprove.plasticity._acceptance.judge_candidate`, within the tolerance
  of the start *and* of the unpruned start fine-tuned with the same steps, batches and rates
  (:class:`selfimprove.plasticity._reference.ReferenceTrack`, advanced beside the model); a
  learn-only cycle is kept when it lowered perplexity (:func:`judge_learning`);
- how much to grow: :func:`selfimprove.plasticity._adaptation.adapt_growth`, in proportion to
  the grown heads that paid.

:func:`run_cycle` chains the steps.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import replace

import torch

from selfimprove.checkpoints import sha256_hex
from selfimprove.measure.finetune import finetune_
from selfimprove.measure.lm_judge import CycleVerdict
from selfimprove.nn.modules import state_to_bytes
from selfimprove.nn.transformer.checkpoint import SavedModel, load_model, save_model
from selfimprove.nn.transformer.gates import heads_per_layer
from selfimprove.nn.transformer.growth import plan_growth
from selfimprove.nn.transformer.importance import head_importance, prune_iteratively
from selfimprove.nn.transformer.surgery import grow_heads
from selfimprove.plasticity._acceptance import judge_candidate, judge_learning
from selfimprove.plasticity._adaptation import (
    Transformation,
    adapt_growth,
    cycle_reward,
)
from selfimprove.plasticity._config import CycleOutcome
from selfimprove.plasticity._cycle_state import (
    Choice,
    Grown,
    Learned,
    Pruned,
    RunContext,
    RunState,
)
from selfimprove.plasticity._forecast import Forecast, forecast_gap, recoveries
from selfimprove.plasticity._reference import ReferenceTrack, finetune_seed
from selfimprove.plasticity._search import RemovalSearch, next_removal, update_search
from selfimprove.plasticity._selection import drop_unpaid_heads, screen_estimators
from selfimprove.plasticity._slots import SlotBook
from selfimprove.plasticity._workbench import snapshot, to_device, window_losses
from selfimprove.seeding import derive_seed

__all__ = [
    "adapt",
    "choose",
    "decide",
    "forecast",
    "grow",
    "learn",
    "measure",
    "prune",
    "record",
    "run_cycle",
]

logger = logging.getLogger(__name__)


def _search(ctx: RunContext, state: RunState) -> RemovalSearch:
    """The run's removal search (made on the first cycle, from the starting model)."""
    if state.search is None:
        total = sum(ctx.original_heads)
        state.search = RemovalSearch(
            total=total,
            removable=sum(max(0, h - ctx.config.min_heads_per_layer) for h in ctx.original_heads),
            resolution=len(ctx.original_heads),
            accepted=total - sum(heads_per_layer(state.model)),
        )
    return state.search


def choose(ctx: RunContext, state: RunState, cycle: int) -> Choice | None:
    """Choose how many heads go, the estimator and the growth (``None``: the run stops).

    The number of heads comes from the search for the largest removal within the tolerance
    (:func:`next_removal`; the first cycle removes the initial level's share). A remembered
    success from a similar state is reused (its strategies, and its level where the bracket
    allows it); a remembered failure from a similar state caps the bracket. When the search
    is resolved the cycle only learns (``n_prune == 0``), or with ``learn_when_resolved``
    off the run stops.
    """
    cfg = ctx.config
    heads = heads_per_layer(state.model)
    search = _search(ctx, state)
    removed = search.total - sum(heads)
    fractions = [h / o for h, o in zip(heads, ctx.original_heads, strict=True)]
    rel_ppl = state.perplexity / ctx.start_perplexity
    hit = ctx.memory.recall(ctx.model_key, fractions, rel_ppl)
    g_why = ""
    if hit is not None:
        p_strategy, g_strategy = hit.pruning_strategy, hit.growth_strategy
        c_ratio = hit.growth_ratio
        why = (
            f"memory: reused {hit.run} cycle {hit.cycle} (reward {hit.reward:+.3f}) "
            "from a similar state"
        )
    else:
        p_strategy, p_why = ctx.pruning.choose()
        g_strategy, g_why = ctx.growth.choose()
        c_ratio = state.ratio
        why = f"pruning {p_why}; growth {g_why}"
    screen = cfg.screen_estimators and hit is None
    failed = [
        removed + max(1, round(t.pruning_level * sum(heads)))
        for t in ctx.memory.failures(ctx.model_key, fractions, rel_ppl)
        if screen or t.pruning_strategy == p_strategy
    ]
    if failed and (search.rejected is None or min(failed) < search.rejected):
        search = state.search = replace(search, rejected=min(failed))
        why += f"; memory: {min(failed)} heads removed in total failed here before"
    target, s_why = next_removal(search, first=round(state.level * search.total))
    if hit is not None and target is not None:
        recalled = removed + max(1, round(hit.pruning_level * sum(heads)))
        if recalled <= search.upper:
            target, s_why = recalled, f"memory: level {hit.pruning_level:.3g}"
    if target is None:
        if not cfg.learn_when_resolved:
            logger.log(logging.INFO if ctx.verbose else logging.DEBUG, "cycle %d: %s", cycle, s_why)
            return None
        p_strategy, g_strategy, c_ratio, screen = "none", "none", 0.0, False
        why = f"learn only: {s_why}"
    n_prune = 0 if target is None else target - removed
    return Choice(
        cycle=cycle,
        seed=derive_seed(cfg.seed, "cycle", cycle),
        heads=heads,
        fractions=fractions,
        perplexity_before=state.perplexity,
        relative_perplexity=rel_ppl,
        pruning_strategy=p_strategy,
        level=n_prune / sum(heads),
        growth_strategy=g_strategy,
        ratio=c_ratio,
        why=why if target is None else f"{why}; {s_why}",
        growth_why=g_why,
        screen=screen,
        n_prune=n_prune,
        target=target,
        search_why=s_why,
    )


def prune(ctx: RunContext, state: RunState, choice: Choice, book: SlotBook) -> Pruned:
    """Remove ``choice.n_prune`` heads by importance (screened estimators or the chosen one)."""
    cfg, bench, current = ctx.config, ctx.bench, state.model
    ctx.phase(choice.cycle, "prune")
    batches = bench.importance_batches(choice.seed)
    probe = bench.probe(choice.seed)
    strategy, why = choice.pruning_strategy, choice.why
    screened: dict[str, float] | None = None
    if choice.screen:
        strategy, model, removed, steps, screened = screen_estimators(
            current, choice.n_prune, batches, probe, choice.seed, cfg
        )
        ranked = sorted(screened.items(), key=lambda kv: kv[1])
        why = (
            f"pruning {strategy}: screened on probe training windows ("
            + ", ".join(f"{k} {v:.4f}" for k, v in ranked)
            + f" nats); growth {choice.growth_why}"
        )
    else:
        model, removed, steps = prune_iteratively(
            current,
            choice.n_prune,
            strategy,
            batches,
            step_fraction=cfg.prune_step_fraction,
            min_heads=cfg.min_heads_per_layer,
            seed=choice.seed,
        )
    grad_scores = (
        steps[0].importance
        if strategy == "gradient"
        else [s.tolist() for s in head_importance(current, batches, "gradient")]
    )
    slots_before = [list(s) for s in book.slots]
    pruned_slots = book.prune_(removed)
    ctx.log.write(
        choice.cycle,
        "prune",
        {
            **snapshot(model),
            "strategy": strategy,
            "level": choice.level,
            "target": choice.target,
            "search": state.search.to_dict() if state.search else None,
            "choice": why,
            "slots": slots_before,
            "importance": {"method": strategy, "scores": steps[0].importance},
            "screen": screened,
            "gradient": grad_scores,
            "pruned": pruned_slots,
            "steps": len(steps),
        },
    )
    return Pruned(model=model, strategy=strategy, why=why, slots=pruned_slots, batches=batches)


def keep_as_is(state: RunState, choice: Choice) -> tuple[Pruned, Grown]:
    """A learn-only cycle's "pruned" and "grown" model: a copy of the current one."""
    model = copy.deepcopy(state.model)
    pruned = Pruned(model=model, strategy="none", why=choice.why, slots=[], batches=[])
    grown = Grown(model=model, new_positions={}, planned=0, perplexity=state.perplexity, slots=[])
    return pruned, grown


def measure(ctx: RunContext, cycle: int, pruned: Pruned) -> float:
    """Validation perplexity of the pruned model."""
    ctx.phase(cycle, "measure")
    ppl = ctx.bench.perplexity(pruned.model)
    ctx.log.write(cycle, "measure", {**snapshot(pruned.model), "perplexity": ppl})
    return ppl


def forecast(
    ctx: RunContext, state: RunState, choice: Choice, ppl_pruned: float
) -> Forecast | None:
    """The pruned candidate's gap to the reference after fine-tuning, forecast from its
    one-shot damage and the run's earlier cycles (:func:`forecast_gap`; ``None`` when
    ``forecast_before_learning`` is off, there is no reference, or no step to save)."""
    cfg = ctx.config
    if not cfg.forecast_before_learning or state.reference is None or cfg.finetune_steps == 0:
        return None
    history = recoveries(
        [
            (
                o.accepted,
                o.heads_pruned,
                o.perplexity_before,
                o.perplexity_pruned,
                o.perplexity_after,
                o.reference_perplexity,
            )
            for o in state.outcomes
        ],
        ctx.start_perplexity,
    )
    fc = forecast_gap(
        history,
        gap_before=math.log(state.perplexity / state.reference.perplexity),
        damage=math.log(ppl_pruned / state.perplexity),
        tolerance=cfg.perplexity_tolerance,
    )
    ctx.log.write(
        choice.cycle,
        "forecast",
        {
            "target": choice.target,
            "perplexity_pruned": ppl_pruned,
            "gap": fc.gap,
            "limit": fc.limit,
            "share": fc.share,
            "worth_learning": fc.worth_learning,
            "reason": fc.reason,
        },
    )
    return fc


def grow(
    ctx: RunContext, choice: Choice, pruned: Pruned, ppl_pruned: float, book: SlotBook
) -> Grown:
    """Add ``round(ratio * pruned)`` function-preserving heads where the placement says."""
    bench = ctx.bench
    ctx.phase(choice.cycle, "grow")
    n_grow = choice.n_grow
    raw = (
        head_importance(pruned.model, pruned.batches, "gradient", normalise=False)
        if choice.growth_strategy == "importance" and n_grow
        else None
    )
    plan = plan_growth(
        n_grow,
        heads_per_layer(pruned.model),
        strategy=choice.growth_strategy,
        max_heads=ctx.original_heads,
        raw_importance=raw,
        seed=choice.seed,
    )
    model, new_positions = grow_heads(pruned.model, plan, seed=choice.seed)
    probe = bench.val[:4]
    with torch.no_grad():
        before_logits = pruned.model(input_ids=probe[:, :-1].to(bench.device)).logits
        after_logits = model(input_ids=probe[:, :-1].to(bench.device)).logits
    max_change = float((after_logits - before_logits).abs().max())
    ppl = bench.perplexity(model) if plan else ppl_pruned
    grown_slots = book.grow_(new_positions)
    ctx.log.write(
        choice.cycle,
        "grow",
        {
            **snapshot(model),
            "strategy": choice.growth_strategy,
            "ratio": choice.ratio,
            "plan": {str(k): v for k, v in plan.items()},
            "grown": grown_slots,
            "perplexity": ppl,
            "max_logit_change": max_change,
            "slots": book.slots,
        },
    )
    return Grown(
        model=model,
        new_positions=new_positions,
        planned=sum(plan.values()),
        perplexity=ppl,
        slots=grown_slots,
    )


def learn(
    ctx: RunContext,
    state: RunState,
    choice: Choice,
    pruned: Pruned,
    grown: Grown,
    book: SlotBook,
) -> Learned:
    """Fine-tune the grown model, drop grown heads that do not pay, measure the candidate and
    the unpruned reference fine-tuned one cycle further with the same seed and rates.

    The fine-tuning seed is the cycle's (:func:`finetune_seed`), its learning rates its stretch
    of the run's schedule (``lr_schedule``); the reference is fine-tuned with both.
    """
    cfg, bench = ctx.config, ctx.bench
    ctx.phase(choice.cycle, "learn")
    ft_seed = finetune_seed(cfg.seed, choice.cycle)
    ft_config = cfg.finetune_config(bench.context, cycle=choice.cycle, cycles=ctx.max_cycles)
    model = grown.model
    result = finetune_(
        model,
        bench.data,
        ft_config,
        seed=ft_seed,
        new_heads=grown.new_positions,
    )
    model.eval()
    dropped: dict[int, list[int]] = {}
    pay = "no head grown"
    grown_slots = grown.slots
    if cfg.drop_unpaid_heads and any(grown.new_positions.values()):
        probe = bench.val[:4]
        head_cost = (
            float(window_losses(pruned.model, probe).mean())
            - float(window_losses(state.model, probe).mean())
        ) / max(1, choice.n_prune)
        model, dropped, pay = drop_unpaid_heads(model, dict(grown.new_positions), probe, head_cost)
        grown_slots = book.drop_(dropped, grown_slots)
    ppl_after = bench.perplexity(model)
    ref_ppl: float | None = None
    ref_steps = 0
    if state.reference is not None:
        ref_ppl, ref_steps = state.reference.candidate(ft_seed, bench, ft_config)
    test_after = bench.perplexity(model, "test")
    deg = bench.degeneration(model)
    (lat_before, serving_before), (lat_after, serving_after) = bench.latency(state.model, model)
    snap = snapshot(model)
    start = ctx.start
    ctx.log.write(
        choice.cycle,
        "learn",
        {
            **snap,
            "perplexity": ppl_after,
            "test_perplexity": test_after,
            "reference_perplexity": ref_ppl,
            "reference_steps": ref_steps,
            "degeneration": deg.score,
            "degeneration_report": deg.to_dict(),
            "latency_ms": lat_after,
            "latency_before_ms": lat_before,
            "serving_latency_ms": serving_after,
            "serving_latency_before_ms": serving_before,
            "finetune_steps": result.steps,
            "growth_paid": pay,
            "slots": book.slots,
            "grown_removed": {str(k): v for k, v in dropped.items()},
            "finetune_first_loss": result.losses[0] if result.losses else None,
            "finetune_last_loss": result.losses[-1] if result.losses else None,
            "efficiency": (start["heads"] / snap["heads"]) * (ctx.start_perplexity / ppl_after),
        },
    )
    return Learned(
        model=model,
        finetune_seed=ft_seed,
        finetune=result,
        dropped=dropped,
        grown_slots=grown_slots,
        perplexity=ppl_after,
        test_perplexity=test_after,
        degeneration=deg,
        latency_before_ms=lat_before,
        latency_after_ms=lat_after,
        serving_before_ms=serving_before,
        serving_after_ms=serving_after,
        snapshot=snap,
        reference_perplexity=ref_ppl,
        reference_steps=ref_steps,
    )


def decide(
    ctx: RunContext,
    state: RunState,
    cycle: int,
    learned: Learned,
    book: SlotBook,
    *,
    learn_only: bool = False,
) -> tuple[CycleVerdict, SavedModel | None, str | None]:
    """Judge the candidate (:func:`judge_candidate`; a learn-only cycle by
    :func:`judge_learning`) and keep it or undo the cycle for real.

    A kept candidate is saved as ``checkpoints/cycle_NNN`` and becomes the state's model (and
    its reference the run's); an undone cycle reads the pre-cycle checkpoint back from disk
    (sha256 checked).

    Returns:
        The verdict, the kept cycle's checkpoint (else ``None``), and the sha256 of the
        restored weights (``None`` when kept).
    """
    cfg = ctx.config
    verdict = judge_candidate(
        perplexity_start=ctx.start_perplexity,
        perplexity_reference=learned.reference_perplexity,
        perplexity_after=learned.perplexity,
        degeneration=learned.degeneration.score,
        tolerance=cfg.perplexity_tolerance,
        degeneration_threshold=cfg.degeneration_threshold,
        reference_steps=learned.reference_steps,
    )
    if learn_only:
        verdict = judge_learning(
            perplexity_before=state.perplexity,
            perplexity_after=learned.perplexity,
            degeneration=learned.degeneration.score,
            degeneration_threshold=cfg.degeneration_threshold,
            rule=verdict,
        )
    if verdict.accepted:
        state.reference_plan.append((learned.finetune_seed, cycle))
        if state.reference is not None:
            state.reference.advance(learned.finetune_seed)
        state.saved = save_model(
            learned.model,
            ctx.run_dir / "checkpoints" / f"cycle_{cycle:03d}",
            extra={"cycle": cycle},
        )
        state.model, state.perplexity, state.book = learned.model, learned.perplexity, book
        return verdict, state.saved, None
    # Undo for real: the pre-cycle weights come back from disk, checksum verified.
    state.model = to_device(load_model(state.saved.weights.with_suffix("")), ctx.bench.device)
    return verdict, None, sha256_hex(state_to_bytes(state.model))


def adapt(
    ctx: RunContext,
    state: RunState,
    choice: Choice,
    pruned: Pruned,
    grown: Grown,
    learned: Learned,
    verdict: CycleVerdict,
) -> tuple[float, str]:
    """Reward the strategies, move the search's bracket, set the growth ratio, remember the
    transformation (a learn-only cycle moves the bracket's margin only).

    Returns:
        The reward and the label of the changes.
    """
    cfg = ctx.config
    baseline = min(ctx.start_perplexity, learned.reference_perplexity or math.inf)
    reward = cycle_reward(
        accepted=verdict.accepted,
        heads_before=sum(choice.heads),
        heads_after=learned.snapshot["heads"],
        perplexity_start=baseline,
        perplexity_after=learned.perplexity,
        tolerance=cfg.perplexity_tolerance,
    )
    search = _search(ctx, state)
    removed = search.total - learned.snapshot["heads"]
    state.search = update_search(
        search, removed=removed, accepted=verdict.accepted, margin=verdict.margin
    )
    kept_grown = grown.planned - sum(len(v) for v in learned.dropped.values())
    state.ratio, g_label = adapt_growth(choice.ratio, grown=grown.planned, kept=kept_grown)
    _, next_why = next_removal(state.search, first=1)
    done = "kept" if verdict.accepted else "rejected, retry smaller"
    label = f"{done}: {removed} of {search.total} heads removed; next: {next_why}; {g_label}"
    if choice.n_prune == 0:
        return reward, label
    ctx.pruning.update(pruned.strategy, reward)
    if choice.n_grow:
        ctx.growth.update(choice.growth_strategy, reward)
    ctx.memory.add(
        Transformation(
            model=ctx.model_key,
            run=ctx.run_dir.name,
            cycle=choice.cycle,
            head_fractions=choice.fractions,
            relative_perplexity=choice.relative_perplexity,
            pruning_strategy=pruned.strategy,
            pruning_level=choice.level,
            growth_strategy=choice.growth_strategy,
            growth_ratio=choice.ratio,
            pruned=[[int(a), int(b)] for a, b in pruned.slots],
            grown=[[int(a), int(b)] for a, b, _ in learned.grown_slots],
            accepted=verdict.accepted,
            reward=reward,
        )
    )
    return reward, label


def record(
    ctx: RunContext,
    state: RunState,
    step: tuple[Choice, Pruned, float, Grown, Learned],
    verdict: CycleVerdict,
    kept: SavedModel | None,
    restored_sha: str | None,
    *,
    forecast: str | None = None,
    skipped: tuple[int, ...] = (),
) -> CycleOutcome:
    """Learn from the cycle (:func:`adapt`) and write its outcome: the decision record in
    ``metrics.jsonl``, the experiment (and, if kept, the version) in the store.

    Args:
        ctx: The run.
        state: The run's state after :func:`decide`.
        step: What the cycle's steps returned: the choice, the pruned model, its perplexity,
            the grown model and the learned candidate.
        verdict: The rule's decision.
        kept: The kept cycle's checkpoint, or ``None``.
        restored_sha: sha256 of the weights restored after a rejection.
        forecast: The forecasts of the cycle's candidates, in words (``None``: none made).
        skipped: Totals the cycle did not fine-tune because their forecast failed.

    Returns:
        The cycle's outcome (also appended to ``state.outcomes``).
    """
    choice, pruned, ppl_pruned, grown, learned = step
    reward, label = adapt(ctx, state, choice, pruned, grown, learned, verdict)
    snap = learned.snapshot
    outcome = CycleOutcome(
        cycle=choice.cycle,
        accepted=verdict.accepted,
        reason=verdict.reason,
        choice=pruned.why,
        pruning_strategy=pruned.strategy,
        pruning_level=choice.level,
        growth_strategy=choice.growth_strategy,
        growth_ratio=choice.ratio,
        heads_before=sum(choice.heads),
        heads_pruned=choice.n_prune,
        heads_grown=grown.planned - sum(len(v) for v in learned.dropped.values()),
        heads_after=snap["heads"],
        heads_per_layer=snap["heads_per_layer"],
        perplexity_before=choice.perplexity_before,
        perplexity_pruned=ppl_pruned,
        perplexity_grown=grown.perplexity,
        perplexity_after=learned.perplexity,
        test_perplexity_after=learned.test_perplexity,
        degeneration=learned.degeneration.score,
        parameters_after=snap["parameters"],
        latency_before_ms=learned.latency_before_ms,
        latency_after_ms=learned.latency_after_ms,
        serving_latency_before_ms=learned.serving_before_ms,
        serving_latency_after_ms=learned.serving_after_ms,
        reward=reward,
        adaptation=label,
        restored_sha256=restored_sha,
        reference_perplexity=learned.reference_perplexity,
        reference_steps=learned.reference_steps,
        heads_target=choice.target,
        forecast=forecast,
        skipped_targets=skipped,
    )
    state.outcomes.append(outcome)
    ctx.log.write(
        choice.cycle,
        "decision",
        {
            "accepted": verdict.accepted,
            "reason": verdict.reason,
            "reward": reward,
            "adaptation": label,
            "search": state.search.to_dict() if state.search else None,
            "reference_perplexity": learned.reference_perplexity,
            "limit": verdict.limit,
            "margin": verdict.margin,
            "next_growth_ratio": state.ratio,
            "restored_sha256": restored_sha,
            "checkpoint_sha256": state.saved.sha256,
            "pruning_strategy": pruned.strategy,
            "growth_strategy": choice.growth_strategy,
            "ratings": {"pruning": ctx.pruning.to_dict(), "growth": ctx.growth.to_dict()},
            **snapshot(state.model),
        },
    )
    ctx.ledger.record_cycle(
        outcome,
        verdict,
        seed=choice.seed,
        start_perplexity=ctx.start_perplexity,
        saved=kept,
        reference_perplexity=learned.reference_perplexity,
    )
    level = logging.INFO if ctx.verbose else logging.DEBUG
    logger.log(
        level,
        "cycle %d: %s (%s)",
        choice.cycle,
        "accepted" if verdict.accepted else "rejected",
        verdict.reason,
    )
    ctx.emit("cycle", outcome=outcome, max_cycles=ctx.max_cycles)
    return outcome


def run_cycle(ctx: RunContext, state: RunState, cycle: int) -> CycleOutcome | None:
    """One cycle: choose -> prune -> measure -> forecast -> grow -> learn -> decide -> record
    (a candidate forecast to fail goes back to choose, with the search's bracket below it; a
    cycle after the search is resolved: choose -> learn -> decide -> record).

    Args:
        ctx: The run.
        state: The model as last accepted (updated in place).
        cycle: Cycle number (from 1).

    Returns:
        The outcome, or ``None`` when no head is left to remove (the run stops).
    """
    if ctx.config.accept_against_reference and state.reference is None:
        # The first cycle starts from the run's start: the reference begins there too.
        state.reference = ReferenceTrack.start(state.model, state.perplexity)
    choice = choose(ctx, state, cycle)
    skipped: list[int] = []
    told: list[str] = []
    bound = _search(ctx, state).rejected  # what fine-tuned cycles found, before this cycle
    while choice is not None:
        book = state.book.copy()  # the cycle's slot ids; the run's change only if it is kept
        if choice.n_prune == 0:  # the search is resolved: this cycle only learns
            pruned, grown = keep_as_is(state, choice)
            ppl_pruned, fc = state.perplexity, None
            break
        pruned = prune(ctx, state, choice, book)
        ppl_pruned = measure(ctx, cycle, pruned)
        fc = forecast(ctx, state, choice, ppl_pruned)
        if fc is None or fc.worth_learning:
            grown = grow(ctx, choice, pruned, ppl_pruned, book)
            break
        # Not worth its steps: within this cycle the search counts the total as failed and
        # tries a smaller one. Only fine-tuned cycles bound the search for good: the next
        # cycle forecasts again, with what this one's fine-tuning teaches about recovery.
        target = int(choice.target or 0)
        skipped.append(target)
        told.append(f"not fine-tuned {target} heads removed: {fc.reason}")
        state.search = update_search(
            _search(ctx, state), removed=target, accepted=False, margin=0.0
        )
        choice = choose(ctx, state, cycle)
    if skipped:
        state.search = replace(_search(ctx, state), rejected=bound)
    if choice is None:
        return None
    learned = learn(ctx, state, choice, pruned, grown, book)
    verdict, kept, restored_sha = decide(
        ctx, state, cycle, learned, book, learn_only=choice.n_prune == 0
    )
    if fc is not None:
        told.append(f"fine-tuned {choice.target} heads removed: {fc.reason}")
    return record(
        ctx,
        state,
        (choice, pruned, ppl_pruned, grown, learned),
        verdict,
        kept,
        restored_sha,
        forecast="; ".join(told) or None,
        skipped=tuple(skipped),
    )
