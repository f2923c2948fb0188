"""``distill`` on language models: per-token soft targets and attention transfer (Zagoruyko &
Komodakis 2017) for GPT-2 students.

The pair that matters is a GPT-2 whose heads were pruned, taught by its unpruned parent. Here the
models are tiny (2 layers x 4 heads, 64 dims, windows of 32 bytes), the parent is trained for a
few seconds and its student keeps 2 and 3 of the 4 heads of its layers; every distillation runs
a few steps. What the benchmark measures (the term's effect on test perplexity) is in
``benchmarks/distillation.py``.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from selfimprove.errors import ConfigError
from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.finetune import FINETUNE_LR, FinetuneConfig, finetune_
from selfimprove.nn.transformer.surgery import prune_heads
from selfimprove.registry import LoadedModel
from selfimprove.seeding import derive_seed, torch_seeded
from selfimprove.strategies import Budget, StrategyContext
from selfimprove.strategies._distill import (
    DEFAULT_ATTENTION_WEIGHT,
    DistillConfig,
    DistillStrategy,
)
from selfimprove.strategies._distill_attention import (
    AttentionPair,
    attention_loss,
    attention_maps,
    attention_pair,
    eager_attention,
    logits_and_attentions,
    match_layers,
)
from selfimprove.tasks import SupervisedTask
from selfimprove.tasks.language import CausalLM, LanguageModelTask
from tests.conftest import wine_task

PARAMS: dict[str, Any] = {"n_layer": 2, "n_head": 4, "n_embd": 64, "n_positions": 32}
REMOVED = {0: [0, 1], 1: [3]}  # the student keeps 2 and 3 heads
STUDENT_PARAMS: dict[str, Any] = {**PARAMS, "heads_per_layer": [2, 3]}


@pytest.fixture(scope="module")
def task() -> LanguageModelTask:
    return LanguageModelTask(
        "distill_attention_test_lm", context=32, max_windows=(256, 32, 32), default_params=PARAMS
    )


@pytest.fixture(scope="module")
def parent_state(task: LanguageModelTask) -> dict[str, torch.Tensor]:
    """The unpruned parent, trained 200 steps (it beats its pruned student on the holdout)."""
    with torch_seeded(0):
        parent = task.build(PARAMS)
    assert isinstance(parent, CausalLM)
    cfg = FinetuneConfig(steps=200, lr=1e-2, batch_size=16, context=task.context)
    finetune_(parent.gpt2, task.token_data(), cfg, seed=0)
    return copy.deepcopy(parent.state_dict())


def _parent(task: LanguageModelTask, state: dict[str, torch.Tensor]) -> CausalLM:
    parent = task.build(PARAMS)
    parent.load_state_dict(state)
    assert isinstance(parent, CausalLM)
    return parent.eval()


def _register(
    si: SelfImprover, task: LanguageModelTask, state: dict[str, torch.Tensor]
) -> tuple[LoadedModel, LoadedModel]:
    """The parent (teacher) and its pruned student; returns ``(student, parent)`` loaded."""
    parent = _parent(task, state)
    si.register_model("parent", task, parent, dict(PARAMS))
    si.register_model("student", task, CausalLM(prune_heads(parent.gpt2, REMOVED)), STUDENT_PARAMS)
    return si.registry.load("student"), si.registry.load("parent")


def _context(
    task: LanguageModelTask, teachers: tuple[LoadedModel, ...], *, seed: int = 3, **params: Any
) -> StrategyContext:
    return StrategyContext(
        task=task,
        objective="nll",
        budget=Budget(epochs=5, seconds=120.0),
        seed=seed,
        teachers=teachers,
        params={"steps": 12, **params},
    )


def _windows(task: LanguageModelTask, n: int = 4) -> torch.Tensor:
    return task.splits().validation.x[:n]  # (n, T)


# ---------------------------------------------------------------------- the pieces
def test_eager_attention_gives_the_default_logits_and_is_restored(
    task: LanguageModelTask, parent_state: dict[str, torch.Tensor]
) -> None:
    """transformers returns attention probabilities only from its eager attention; switched on
    for a block, it computes the default (sdpa) logits within 1e-5, and is switched back."""
    parent = _parent(task, parent_state)
    x = _windows(task)
    default = parent.gpt2.config._attn_implementation
    with torch.no_grad():
        reference = parent(x)  # (B, T, V)
        with eager_attention([parent]):
            assert parent.gpt2.config._attn_implementation == "eager"
            logits, att = logits_and_attentions(parent.gpt2, x)
    assert parent.gpt2.config._attn_implementation == default
    assert torch.allclose(logits, reference, atol=1e-5)
    assert [tuple(a.shape) for a in att] == [(4, 4, 32, 32)] * 2
    # Each row of a causal attention map is a distribution over the tokens before it.
    assert torch.allclose(att[0].sum(dim=-1), torch.ones(4, 4, 32), atol=1e-5)
    assert float(att[0].triu(diagonal=1).abs().max()) == 0.0


def test_layers_are_matched_by_relative_depth() -> None:
    assert match_layers(4, 4) == (0, 1, 2, 3)
    assert match_layers(2, 4) == (0, 3)
    assert match_layers(3, 5) == (0, 2, 4)
    assert match_layers(4, 2) == (0, 0, 1, 1)
    assert match_layers(1, 6) == (5,)


def test_the_attention_loss_is_zero_for_a_student_equal_to_its_teacher(
    task: LanguageModelTask, parent_state: dict[str, torch.Tensor]
) -> None:
    parent = _parent(task, parent_state)
    copy_ = copy.deepcopy(parent)
    pruned = CausalLM(prune_heads(parent.gpt2, REMOVED)).eval()
    x = _windows(task)
    with torch.no_grad(), eager_attention([parent, copy_, pruned]):
        t_maps = attention_maps(logits_and_attentions(parent.gpt2, x)[1])
        same = attention_maps(logits_and_attentions(copy_.gpt2, x)[1])
        fewer = attention_maps(logits_and_attentions(pruned.gpt2, x)[1])
    equal_pair = attention_pair(copy_, parent, task.context)
    assert isinstance(equal_pair, AttentionPair)
    assert float(attention_loss(same, t_maps, equal_pair)) == pytest.approx(0.0, abs=1e-10)
    # Each sequence's map has unit norm; a pruned student's heads average to another map.
    assert torch.allclose(t_maps[0].norm(dim=1), torch.ones(4))
    pruned_pair = attention_pair(pruned, parent, task.context)
    assert pruned_pair == AttentionPair((0, 1), (2, 3), (4, 4))
    assert 0.0 < float(attention_loss(fewer, t_maps, pruned_pair)) <= 4.0


# ---------------------------------------------------------------------- the strategy
def test_attention_transfer_changes_training_and_its_term_falls(
    improver: SelfImprover, task: LanguageModelTask, parent_state: dict[str, torch.Tensor]
) -> None:
    """Same seed, same start and batches: only the attention term differs, and the students
    differ. The student keeps its pruned heads (2 and 3 against the teacher's 4 and 4); the
    term falls while it trains; the candidate reloads from its params."""
    incumbent, parent = _register(improver, task, parent_state)
    plain = DistillStrategy().apply(incumbent, _context(task, (parent,), attention_weight=0.0))
    again = DistillStrategy().apply(incumbent, _context(task, (parent,), attention_weight=0.0))
    transfer = DistillStrategy().apply(
        incumbent, _context(task, (parent,), attention_weight=10.0, steps=30)
    )
    assert plain.details["attention"] == {
        "weight": 0.0,
        "used": False,
        "reason": "attention_weight is 0",
    }
    assert plain.details["kind"] == "language_model" and plain.details["student"] == "warm_start"
    assert plain.details["teacher_holdout"]["nll"] < plain.details["incumbent_holdout"]["nll"]
    assert plain.origin == transfer.origin == "teacher:parent v1"
    att = transfer.details["attention"]
    assert att["used"] and att["weight"] == 10.0 and att["teacher"] == "parent v1"
    assert att["layers"] == {
        "teacher_layers": [0, 1],
        "student_heads": [2, 3],
        "teacher_heads": [4, 4],
    }
    assert att["term_last_steps"] < 0.9 * att["term_first_steps"], att
    assert "attention_weight*mean_layers||a_s-a_t||^2" in transfer.details["loss"]
    assert transfer.details["steps_run"] == 30 and plain.details["steps_run"] == 12

    x = _windows(task)
    with torch.no_grad():
        assert torch.equal(plain.module(x), again.module(x))  # deterministic at equal seed
        # The default attention implementation is back on the student and on the teacher.
        for module in (transfer.module, parent.module):
            assert module.gpt2.config._attn_implementation == "sdpa"
    short = DistillStrategy().apply(
        incumbent, _context(task, (parent,), attention_weight=10.0)
    )  # the same 12 steps as ``plain``
    assert any(
        not torch.equal(v, short.module.state_dict()[k])
        for k, v in plain.module.state_dict().items()
    )
    assert transfer.params == STUDENT_PARAMS
    version = improver.registry.save_version(
        incumbent.model,
        transfer.module,
        transfer.params,
        parent=incumbent.version,
        strategy=transfer.strategy,
        origin=transfer.origin,
        metrics={},
    )
    reloaded = improver.registry.load_module(incumbent.model, version, task)
    with torch.no_grad():
        assert torch.equal(reloaded(x), transfer.module(x))
    # The incumbent and the teacher are left alone.
    with torch.no_grad():
        assert torch.equal(incumbent.module(x), improver.registry.load("student").module(x))
        assert torch.equal(parent.module(x), _parent(task, parent_state)(x))


def test_alpha_zero_without_attention_is_plain_fine_tuning(
    improver: SelfImprover, task: LanguageModelTask, parent_state: dict[str, torch.Tensor]
) -> None:
    """With the teacher's weight at 0 the loss hook computes finetune_'s own loss: the student is
    what finetune_ makes of the incumbent with the same seed, steps and rate."""
    incumbent, parent = _register(improver, task, parent_state)
    cand = DistillStrategy().apply(
        incumbent, _context(task, (parent,), alpha=0.0, attention_weight=0.0, seed=4)
    )
    reference = copy.deepcopy(incumbent.module)
    cfg = FinetuneConfig(
        steps=12, lr=FINETUNE_LR, batch_size=16, context=task.context, warmup_steps=1
    )
    finetune_(reference.gpt2, task.token_data(), cfg, seed=derive_seed(4, "distill", "finetune"))
    for k, v in reference.state_dict().items():
        assert torch.allclose(v, cand.module.state_dict()[k], atol=1e-5), k
    assert cand.cost.epochs == 1


def test_a_pair_without_attention_maps_keeps_soft_targets_alone(
    improver: SelfImprover,
) -> None:
    """MLPs have no attention maps: attention_weight > 0 changes nothing, and says why."""
    wine: SupervisedTask = wine_task("wine_distill_attention")
    with torch_seeded(0):
        teacher = wine.build({"width": 64, "depth": 1})
        weak = wine.build({"width": 4, "depth": 1})
    from selfimprove.measure.training import TrainConfig, train_

    train_(teacher, wine, TrainConfig(epochs=30, lr=1e-2, seed=0))
    improver.register_model("teacher", wine, teacher, {"width": 64, "depth": 1})
    improver.register_model("student", wine, weak, {"width": 4, "depth": 1})
    incumbent, loaded = improver.registry.load("student"), improver.registry.load("teacher")

    def ctx(weight: float) -> StrategyContext:
        return StrategyContext(
            task=wine,
            objective="accuracy",
            budget=Budget(epochs=3, seconds=60.0),
            seed=2,
            teachers=(loaded,),
            params={"attention_weight": weight},
        )

    with_term = DistillStrategy().apply(incumbent, ctx(5.0))
    without = DistillStrategy().apply(incumbent, ctx(0.0))
    assert with_term.details["attention"] == {
        "weight": 5.0,
        "used": False,
        "reason": "the student is not a GPT-2 causal language model (Sequential), so it has no "
        "attention maps to match",
    }
    x = wine.splits().validation.x
    with torch.no_grad():
        assert torch.equal(with_term.module(x), without.module(x))
    # A GPT-2 student of an MLP teacher: the teacher side has no maps either.
    why = attention_pair(CausalLM(_tiny_gpt2()), teacher, 8)
    assert why == (
        "the teacher is not a GPT-2 causal language model (Sequential), so it has no attention "
        "maps to match"
    )


def _tiny_gpt2() -> Any:
    with torch_seeded(0):
        return LanguageModelTask("unused", context=8, default_params=PARAMS).build(PARAMS).gpt2


def test_a_teacher_no_better_than_the_pruned_student_is_not_used(
    improver: SelfImprover, task: LanguageModelTask, parent_state: dict[str, torch.Tensor]
) -> None:
    incumbent, parent = _register(improver, task, parent_state)
    # The parent to improve, taught by its weaker pruned student: no.
    why = DistillStrategy().applicable(parent, _context(task, (incumbent,)))
    assert why is not None and why.startswith("no teacher beats the incumbent"), why


@pytest.mark.parametrize("bad", [-1.0, 1001.0, float("nan"), "heavy"])
def test_bad_attention_weight_is_refused(
    improver: SelfImprover,
    task: LanguageModelTask,
    parent_state: dict[str, torch.Tensor],
    bad: Any,
) -> None:
    with pytest.raises(ConfigError, match="attention_weight"):
        DistillConfig.from_params({"attention_weight": bad})
    incumbent, parent = _register(improver, task, parent_state)
    with pytest.raises(ConfigError, match="attention_weight"):
        DistillStrategy().applicable(incumbent, _context(task, (parent,), attention_weight=bad))
    with pytest.raises(ConfigError, match="steps"):
        DistillConfig.from_params({"steps": 0})
    assert DistillConfig.from_params({}).attention_weight == DEFAULT_ATTENTION_WEIGHT
    assert DistillConfig.from_params({"attention_weight": "2.5"}).attention_weight == 2.5


def test_the_default_weight_transfers_attention_between_gpt2s(
    improver: SelfImprover, task: LanguageModelTask, parent_state: dict[str, torch.Tensor]
) -> None:
    """Without attention_weight in the params, a GPT-2 pair gets the measured default."""
    incumbent, parent = _register(improver, task, parent_state)
    cand = DistillStrategy().apply(incumbent, _context(task, (parent,), steps=2))
    att = cand.details["attention"]
    assert att["used"] is (DEFAULT_ATTENTION_WEIGHT > 0)
    assert att["weight"] == DEFAULT_ATTENTION_WEIGHT
