"""``selfimprove plasticity run | test | visualize``: the command line of seed 004 (typer + rich).

Mounted under the main CLI as a sub-app; the seed's three scripts (``scripts/*_plasticity*.py``)
call it too. Only this module prints. Every error the user can cause ends as one line on stderr
and exit code 2, never a traceback. ``transformers`` is imported only when a command runs.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from selfimprove.surfaces.cli.common import (
    DeviceOpt,
    HomeOpt,
    JsonOpt,
    OneLineErrors,
    VerboseOpt,
    handle_errors,
    is_compact,
    out,
    progress_bars,
    setup_logging,
)

__all__ = ["app", "main"]


def _kebab(name: str) -> str:
    """Option names as typed, with the seed scripts' ``--model_name`` spelling read as
    ``--model-name`` (help shows only the kebab-case one)."""
    return name.replace("_", "-")


app = typer.Typer(
    name="plasticity",
    context_settings={"token_normalize_func": _kebab},
    help=(
        "Adaptive neural plasticity: prune -> measure -> grow -> learn the attention heads of "
        "GPT-2-family models, with degeneration checks and an HTML dashboard."
    ),
    cls=OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


ModelOpt = Annotated[
    str,
    typer.Option(
        "--model-name",
        help="'tiny' (pre-trained on the --dataset's training split, once per machine: cached "
        "in the user cache folder, or $SELFIMPROVE_CACHE) or a GPT-2 model available offline "
        "(hub cache or save_pretrained folder).",
    ),
]
DatasetOpt = Annotated[
    str,
    typer.Option(
        "--dataset",
        help="'pydoc' (built-in CPython help text), a local text file, or a Hugging Face "
        "dataset name available offline.",
    ),
]
CyclesOpt = Annotated[int, typer.Option("--cycles", "-n", min=1, max=1000, help="Cycles to run.")]
OutputOpt = Annotated[
    Path,
    typer.Option("--output-dir", help="Folder of the run_YYYYmmdd-HHMMSS/ run folders."),
]
DashboardOpt = Annotated[
    bool, typer.Option("--dashboard/--no-dashboard", help="Write dashboard.html in the run folder.")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of every random choice.")]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _quiet_transformers(verbose: bool) -> None:
    """Keep transformers' notices about its own API (a ``FutureWarning`` on ``past_key_values``,
    its logger's deprecation lines) off the terminal; ``--verbose`` shows them."""
    if verbose:
        return
    from transformers.utils import logging as transformers_logging

    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    transformers_logging.set_verbosity_error()


def _short_path(path: str) -> str:
    """``path`` with the user's home directory written ``~``."""
    try:
        return "~" + os.sep + str(Path(path).relative_to(Path.home()))
    except (ValueError, RuntimeError):
        return path


class _Bars:
    """Rich progress bars fed by the system's progress events. Where stderr is not a terminal
    (a log file, CI, ``--json`` output piped on) bars would draw nothing, so the pre-training of
    ``tiny``, the one long wait, is reported as plain lines instead, every tenth of its steps."""

    def __init__(self, progress: Progress, cycles: int) -> None:
        self.progress = progress
        self.pretrain: Any = None
        self.cycles = progress.add_task("loading the model and data", total=cycles)
        self.lines = not progress.console.is_terminal

    def _pretrain(self, data: dict[str, Any]) -> None:
        what = (
            f"pre-training tiny on {data['corpus']} "
            f"(once per machine, cached in {_short_path(data['folder'])})"
        )
        step, steps, loss = data["step"], data["steps"], data["loss"]
        if self.lines:
            if step in (1, steps) or step % max(1, steps // 10) == 0:
                self.progress.console.print(
                    f"{what}: step {step}/{steps} · loss {loss:.3f}",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
            return
        if self.pretrain is None:
            self.pretrain = self.progress.add_task(escape(what), total=steps)
        self.progress.update(
            self.pretrain, completed=step, description=f"{escape(what)} · loss {loss:.3f}"
        )

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if event == "pretrain":
            self._pretrain(data)
        elif event == "phase":
            self.progress.update(
                self.cycles,
                description=f"cycle {data['cycle']}/{data['max_cycles']} · {data['phase']}",
            )
        elif event == "cycle":
            self.progress.advance(self.cycles)


@contextmanager
def _bars(cycles: int) -> Iterator[_Bars]:
    """Progress bars on stderr, gone when the work ends."""
    with progress_bars() as progress:
        yield _Bars(progress, cycles)


def _run_system(
    *,
    model_name: str,
    dataset: str,
    output_dir: Path,
    cycles: int,
    pruning_level: float,
    growth_ratio: float,
    config: Any,
    device: str,
    home: Path | None,
    verbose: bool,
) -> Any:
    from selfimprove.plasticity import AdaptivePlasticitySystem

    with _bars(cycles) as bars:
        system = AdaptivePlasticitySystem(
            model_name,
            dataset,
            output_dir,
            device,
            verbose,
            config=config,
            home=home,
            progress=bars,
        )
        system.run_adaptive_optimization(cycles, pruning_level, growth_ratio)
        return system


def _cycle_table(cycles: Sequence[Any], width: int | None = None) -> Table:
    """The cycles of a run. Below ``WIDE_TABLE`` columns (``width``, default the terminal's) a
    compact layout keeps every header readable: the strategies, degeneration and latency are left
    out (each cycle's reason, printed below the table, gives them)."""
    table = Table(title="Plasticity cycles (validation decides; test is only reported)")
    compact = is_compact(width, wide=155)
    columns = {
        "cycle": "cycle",
        "decision": "decision",
        "pruning": None if compact else "pruning",
        "growth": None if compact else "growth",
        "heads": "heads",
        "perplexity": "perplexity" if compact else "perplexity pruned → learned",
        "test": "test ppl",
        "degeneration": None if compact else "degen.",
        "latency": None if compact else "latency ms",
        "reward": "reward",
    }
    for header in columns.values():
        if header is not None:
            table.add_column(header, no_wrap=header != "decision", justify="left")
    for c in cycles:
        cells = {
            "cycle": str(c.cycle),
            "decision": "[green]accepted[/]" if c.accepted else "[yellow]rejected[/]",
            "pruning": f"{c.pruning_strategy} {c.pruning_level:.2g}",
            "growth": f"{c.growth_strategy} x{c.growth_ratio:.2g}",
            "heads": f"{c.heads_before} -{c.heads_pruned} +{c.heads_grown} = {c.heads_after}",
            "perplexity": f"{_fmt(c.perplexity_pruned)} → {_fmt(c.perplexity_after)}",
            "test": _fmt(c.test_perplexity_after),
            "degeneration": _fmt(c.degeneration, 3),
            "latency": f"{_fmt(c.latency_before_ms, 3)} → {_fmt(c.latency_after_ms, 3)}",
            "reward": f"{c.reward:+.3f}",
        }
        table.add_row(*(cells[key] for key, header in columns.items() if header is not None))
    return table


def _print_summary(results: Any) -> None:
    out.print(_cycle_table(results.cycles))
    for c in results.cycles:
        if c.skipped_targets and c.forecast:  # larger removals forecast to fail: no steps spent
            out.print(f"cycle {c.cycle}: {c.forecast}", highlight=False)
        out.print(f"cycle {c.cycle}: {c.reason}", highlight=False)
    s, f, ref = results.start, results.final, results.reference
    out.print(
        f"heads {s['heads']} → {f['heads']} {f['heads_per_layer']} · parameters "
        f"{s['parameters']} → {f['parameters']} (x{f['parameter_ratio']:.3f})",
        highlight=False,
    )
    out.print(
        f"validation perplexity {s['perplexity']:.4g} → {f['perplexity']:.4g} · test (reported "
        f"only) {s['test_perplexity']:.4g} → {f['test_perplexity']:.4g} · degeneration "
        f"{s['degeneration']:.3f} → {f['degeneration']:.3f}",
        highlight=False,
    )
    out.print(
        f"latency batch 1 {f['start_latency_ms']:.3g} → {f['latency_ms']:.3g} ms "
        f"(x{f['latency_ratio']:.3f}) · batch {f['serving_batch']} "
        f"{f['start_serving_latency_ms']:.3g} → {f['serving_latency_ms']:.3g} ms "
        f"(x{f['serving_latency_ratio']:.3f}) · efficiency {f['efficiency']:.3f} "
        "(heads compression x perplexity ratio, higher is better)",
        highlight=False,
    )
    if ref:
        out.print(
            f"unpruned start fine-tuned the same {ref['finetune_steps']} steps: perplexity "
            f"{ref['perplexity']:.4g}; final / reference = {ref['final_vs_reference']:.4f}",
            highlight=False,
        )
    out.print(f"run folder {results.run_dir} · stopped: {results.stopped}", highlight=False)
    if results.dashboard:
        out.print(f"dashboard {results.dashboard}", highlight=False)


@app.command()
@handle_errors
def run(
    model_name: ModelOpt = "tiny",
    dataset: DatasetOpt = "pydoc",
    cycles: CyclesOpt = 5,
    pruning_level: Annotated[
        float,
        typer.Option("--pruning-level", help="Share of heads pruned in cycle 1 (0-0.5]."),
    ] = 0.2,
    growth_ratio: Annotated[
        float,
        typer.Option("--growth-ratio", help="Heads grown per head pruned in cycle 1."),
    ] = 0.5,
    tolerance: Annotated[
        float,
        typer.Option(
            "--tolerance",
            help="Allowed relative perplexity increase over the start and over the unpruned "
            "start fine-tuned with the same steps.",
        ),
    ] = 0.05,
    steps: Annotated[
        int,
        typer.Option(
            "--steps",
            min=0,
            max=1_000_000,
            help="Fine-tuning steps per cycle (one learning-rate schedule over all cycles).",
        ),
    ] = 100,
    context: Annotated[
        int, typer.Option("--context", min=8, max=65_536, help="Tokens per window.")
    ] = 128,
    output_dir: OutputOpt = Path("./output/adaptive_plasticity"),
    dashboard: DashboardOpt = True,
    device: DeviceOpt = "cpu",
    seed: SeedOpt = 0,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run prune -> measure -> grow -> learn cycles and write a run folder.

    A cycle that leaves perplexity above (1 + tolerance) x the start, or x the unpruned start
    fine-tuned with the same steps, is undone from its checkpoint; a pruned candidate whose
    forecast (its damage before fine-tuning, and the share earlier cycles left) already exceeds
    the tolerance is not fine-tuned, and a smaller removal is tried. Once the largest removal
    within the tolerance is found, the remaining cycles only fine-tune, kept when they lower
    perplexity. The cycles share one learning-rate warm-up and decay.

    Example: selfimprove plasticity run --model-name tiny --dataset pydoc --cycles 3

    Example: selfimprove plasticity run --dataset ./notes.txt --tolerance 0.02 --json
    """
    from selfimprove.plasticity import PlasticityConfig

    setup_logging(verbose)
    _quiet_transformers(verbose)
    config = PlasticityConfig(
        seed=seed,
        context=context,
        perplexity_tolerance=tolerance,
        finetune_steps=steps,
        dashboard=dashboard,
    )
    results = _run_system(
        model_name=model_name,
        dataset=dataset,
        output_dir=output_dir,
        cycles=cycles,
        pruning_level=pruning_level,
        growth_ratio=growth_ratio,
        config=config,
        device=device,
        home=home,
        verbose=verbose,
    ).results_
    if as_json:
        out.print_json(json.dumps(results.to_dict()))
        return
    _print_summary(results)


#: A self-test check: its name, whether it passed, the figures.
Check = tuple[str, bool, str]


def _surgery_checks(model: Any, x: Any, seed: int) -> list[Check]:
    """Gated logits equal pruned logits, and growth keeps the logits (half the heads of each
    layer, drawn with ``seed``; ``x`` is ``(B, T)`` token ids on the model's device)."""
    import torch

    from selfimprove.plasticity import HeadGates, grow_heads, heads_per_layer, prune_heads

    gen = torch.Generator().manual_seed(seed)
    remove = {
        layer: sorted(torch.randperm(h, generator=gen)[: h // 2].tolist())
        for layer, h in enumerate(heads_per_layer(model))
        if h > 1
    }
    checks: list[Check] = []
    with torch.no_grad():
        with HeadGates.mask(model, remove):
            gated = model(input_ids=x).logits
        pruned = prune_heads(model, remove)
        diff = float((pruned(input_ids=x).logits - gated).abs().max())
        checks.append(("gated logits = pruned logits", diff <= 1e-4, f"max |Δ| {diff:.2e}"))
        grown, _ = grow_heads(pruned, dict.fromkeys(remove, 1), seed=seed)
        diff = float((grown(input_ids=x).logits - pruned(input_ids=x).logits).abs().max())
        checks.append(("growth keeps the logits", diff <= 1e-4, f"max |Δ| {diff:.2e}"))
    return checks


def _run_checks(system: Any, config: Any, x: Any) -> list[Check]:
    """Perplexity and degeneration within bounds, no more heads, and the last kept checkpoint
    reloads to the final model exactly."""
    import torch

    from selfimprove.plasticity import load_model

    results = system.results_
    s, f = results.start, results.final
    limit = s["perplexity"] * (1 + config.perplexity_tolerance)
    checks: list[Check] = [
        (
            "perplexity within tolerance",
            f["perplexity"] <= limit,
            f"{f['perplexity']:.4g} <= {limit:.4g}",
        ),
        (
            "degeneration below threshold",
            f["degeneration"] <= config.degeneration_threshold,
            f"{f['degeneration']:.3f} <= {config.degeneration_threshold}",
        ),
        ("heads not more", f["heads"] <= s["heads"], f"{s['heads']} → {f['heads']}"),
    ]
    last = max((c.cycle for c in results.cycles if c.accepted), default=0)
    reloaded = load_model(results.run_dir / "checkpoints" / f"cycle_{last:03d}")
    torch.nn.Module.to(reloaded, x.device)
    with torch.no_grad():
        diff = float((reloaded(input_ids=x).logits - system.model_(input_ids=x).logits).abs().max())
    checks.append(("final checkpoint reloads exactly", diff == 0.0, f"max |Δ| {diff:.2e}"))
    return checks


def _report_checks(checks: list[Check], results: Any, as_json: bool) -> bool:
    """Print the checks (and the run's summary); returns whether all passed."""
    ok = all(c[1] for c in checks)
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "ok": ok,
                    "checks": [{"check": n, "ok": o, "detail": d} for n, o, d in checks],
                    "results": results.to_dict(),
                }
            )
        )
        return ok
    _print_summary(results)
    table = Table(title="Self-test")
    for col in ("check", "result", "detail"):
        table.add_column(col)
    for name, passed, detail in checks:
        table.add_row(name, "[green]pass[/]" if passed else "[red]FAIL[/]", detail)
    out.print(table)
    return ok


@app.command()
@handle_errors
def test(
    model_name: ModelOpt = "tiny",
    dataset: DatasetOpt = "pydoc",
    cycles: CyclesOpt = 2,
    output_dir: OutputOpt = Path("./output/adaptive_plasticity_test"),
    dashboard: DashboardOpt = True,
    device: DeviceOpt = "cpu",
    seed: SeedOpt = 0,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Quick self-test: check the mechanics on the model, then run a short optimisation.

    Checks gated = pruned logits and function-preserving growth, then runs a short optimisation.

    The run must keep perplexity and degeneration within bounds; exit code 1 if a check fails.

    Example: selfimprove plasticity test --model-name tiny --cycles 2
    """
    from selfimprove.plasticity import AdaptivePlasticitySystem, PlasticityConfig

    setup_logging(verbose)
    _quiet_transformers(verbose)
    config = PlasticityConfig(
        seed=seed, context=64, finetune_steps=30, eval_windows=64, dashboard=dashboard
    )
    with _bars(cycles) as bars:
        # One system: the surgery checks work on copies, so the run starts from the same model
        # and data without loading them again.
        system = AdaptivePlasticitySystem(
            model_name,
            dataset,
            output_dir,
            device,
            verbose,
            config=config,
            home=home,
            progress=bars,
        ).setup()
        x = system.val_[:2, :-1].to(system.device_)  # (2, T)
        checks = _surgery_checks(system.model_, x, seed)
        system.run_adaptive_optimization(cycles, 0.2, 0.5)
    checks += _run_checks(system, config, x)
    if not _report_checks(checks, system.results_, as_json):
        raise typer.Exit(1)


def _decision_table(name: str, decisions: list[dict[str, Any]], width: int | None = None) -> Table:
    """A finished run's decisions; below ``WIDE_TABLE`` columns (``width``, default the
    terminal's) without the strategies' columns, so that the reason stays readable."""
    compact = is_compact(width)
    table = Table(title=f"Run {name}")
    for col in ("cycle", "decision", "pruning", "growth", "heads", "reward"):
        if not (compact and col in ("pruning", "growth")):
            table.add_column(col, no_wrap=col not in ("pruning", "growth"), overflow="fold")
    table.add_column("reason", overflow="fold", min_width=20, ratio=1)
    for d in decisions:
        cells = [
            str(d["cycle"]),
            "[green]accepted[/]" if d.get("accepted") else "[yellow]rejected[/]",
            *(() if compact else (str(d.get("pruning_strategy")), str(d.get("growth_strategy")))),
            str(d.get("heads")),
            _fmt(d.get("reward"), 3),
            str(d.get("reason")),
        ]
        table.add_row(*cells)
    return table


@app.command()
@handle_errors
def visualize(
    results_dir: Annotated[
        Path,
        typer.Option("--results-dir", help="A run folder (run_YYYYmmdd-HHMMSS)."),
    ],
    dashboard: Annotated[
        bool, typer.Option("--dashboard", help="Write the HTML dashboard of the run.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Dashboard file (default: dashboard.html in the run folder)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a finished run's cycles, and with --dashboard write its HTML dashboard.

    Example: selfimprove plasticity visualize --results-dir ./output/run_20250401-120000 --dashboard
    """
    from selfimprove.plasticity import build_dashboard, read_metrics

    records = read_metrics(results_dir)
    decisions = [r for r in records if r["phase"] == "decision"]
    path = build_dashboard(results_dir, output) if dashboard else None
    if as_json:
        out.print_json(
            json.dumps({"decisions": decisions, "dashboard": str(path) if path else None})
        )
        return
    out.print(_decision_table(results_dir.name, decisions))
    if path is not None:
        out.print(f"dashboard {path}", highlight=False)


def main(argv: Sequence[str] | None = None, prog_name: str = "selfimprove plasticity") -> None:
    """Entry point of the scripts: run the sub-app with ``argv`` (default ``sys.argv[1:]``)."""
    app(args=list(argv) if argv is not None else None, prog_name=prog_name)


if __name__ == "__main__":
    main()
