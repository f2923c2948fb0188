"""The ``selfimprove`` command line (typer + rich). Only this module prints.

Every error the user can cause ends as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from selfimprove.config import (
    EXPORT_FORMATS,
    MAX_CYCLES,
    MAX_EPOCHS,
    MAX_KEEP,
    MAX_RETENTION_DAYS,
    MAX_SECONDS,
    MAX_THREADS,
    STRATEGY_NAMES,
    SelfImprovementConfig,
)
from selfimprove.errors import NotFoundError, SelfImproveError
from selfimprove.surfaces.cli.common import (
    MAX_ID,
    MAX_LIMIT,
    DeviceOpt,
    HomeOpt,
    JsonOpt,
    OneLineErrors,
    VerboseOpt,
    err,
    handle_errors,
    is_compact,
    out,
    progress_bars,
    setup_logging,
    working,
)
from selfimprove.surfaces.cli.engine import engine_app
from selfimprove.surfaces.cli.plasticity import app as plasticity_app

if TYPE_CHECKING:  # torch and the loop are imported inside the commands (fast --help)
    from selfimprove.loop.experiment import ExperimentOutcome
    from selfimprove.loop.improver import SelfImprover
    from selfimprove.store import ExperimentRecord

__all__ = ["app", "main"]

app = typer.Typer(
    name="selfimprove",
    help="Keep a population of PyTorch models getting better on their own, with proof.",
    cls=OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(engine_app, name="engine")
app.add_typer(plasticity_app, name="plasticity")


def _print_version(value: bool) -> None:
    if value:
        # the installed distribution's version (the same as selfimprove.__version__): the
        # package's front door is not imported from inside the package
        try:
            version = importlib.metadata.version("selfimprove")
        except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
            version = "unknown (not installed)"
        out.print(f"selfimprove {version}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Keep a population of PyTorch models getting better on their own, with proof."""


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}g}"


def _arrow(before: float | None, after: float | None) -> str:
    return f"{_fmt(before)} → {_fmt(after)}"


def _why(reason: str) -> str:
    """The part of a judge's reason after the figures it repeats (``"…: error −31%, p=0.02"``)."""
    head, sep, tail = reason.partition(": ")
    return tail if sep and "→" in head else reason


def _decision_text(o: ExperimentOutcome) -> str:
    """The decision word, coloured, and the judge's reason without the figures it repeats."""
    if o.promoted:
        word, why = "[green]promoted[/]", _why(o.reason)
    elif o.decision is not None:
        word, why = "[yellow]rejected[/]", _why(o.reason)
    else:
        word, why = f"[dim]{escape(o.status)}[/]", o.reason
    return f"{word}: {escape(why)}" if why else word


def _outcome_table(outcomes: list[ExperimentOutcome], width: int | None = None) -> Table:
    """The results of ``run`` and ``improve``. Below ``WIDE_TABLE`` columns (``width``, default
    the terminal's) a compact layout keeps the decision readable: the model's strategy and
    objective go under its name, the test figures under the validation ones, and the p-value
    (which the decision's reason states) is left out."""
    table = Table(title="Improvement results (validation decides; test is only reported)")
    table.add_column("cycle", justify="right", no_wrap=True, min_width=5)
    if is_compact(width):
        table.add_column("model · strategy", overflow="fold", max_width=24)
        table.add_column("validation [dim]/ test[/]", no_wrap=True)
        table.add_column("decision", overflow="fold", min_width=16, ratio=1)
    else:
        table.add_column("model", no_wrap=True)
        table.add_column("strategy", no_wrap=True)
        table.add_column("objective", no_wrap=True)
        table.add_column("validation", no_wrap=True)
        table.add_column("test", no_wrap=True)
        table.add_column("p", justify="right", no_wrap=True)
        table.add_column("decision", overflow="fold", min_width=16)
    for o in outcomes:
        has_after = o.status == "completed"
        validation = _arrow(o.before, o.after) if has_after else _fmt(o.before)
        test = _arrow(o.test_before, o.test_after) if has_after else _fmt(o.test_before)
        if is_compact(width):
            table.add_row(
                str(o.cycle),
                f"{escape(o.model)}\n[dim]{escape(o.strategy)} · {escape(o.objective)}[/]",
                f"{validation}\n[dim]{test}[/]",
                _decision_text(o),
            )
        else:
            table.add_row(
                str(o.cycle),
                escape(o.model),
                escape(o.strategy),
                escape(o.objective),
                validation,
                test,
                _fmt(o.p_value, 2),
                _decision_text(o),
            )
    return table


#: The webhook alert options of ``run`` and ``serve`` (see selfimprove.surfaces.alerts).
AlertUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--alert-url",
        envvar="SELFIMPROVE_ALERT_URL",
        help="POST a JSON alert to this http(s) webhook on promotion, rollback, degeneration "
        "and failure (default: no alerts).",
    ),
]
AlertOnOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--alert-on",
        help="Only these alert kinds: promotion, rollback, degeneration, failure (repeatable).",
    ),
]


@app.command()
@handle_errors
def run(
    cycles: Annotated[
        int, typer.Option("--cycles", "-n", min=1, max=MAX_CYCLES, help="Cycles to run.")
    ] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Base seed of every experiment.")] = 0,
    epochs: Annotated[
        int,
        typer.Option("--epochs", min=1, max=MAX_EPOCHS, help="Epoch budget of each experiment."),
    ] = 60,
    concurrent: Annotated[
        int, typer.Option("--concurrent", min=1, max=64, help="Experiments run at once per cycle.")
    ] = 3,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Only these models (repeatable).")
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            help="Where experiments run: local (this process) or ray (a Ray cluster; this "
            "process judges and commits).",
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Ray cluster head (host:port, ray://host:port or auto); default with "
            "--executor ray: a local cluster for this run.",
        ),
    ] = None,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            min=1,
            max=MAX_THREADS,
            help="Torch threads each experiment trains with (a setting, not the core count, "
            "so the same seed gives the same decisions anywhere).",
        ),
    ] = 1,
    device: DeviceOpt = "cpu",
    alert_url: AlertUrlOpt = None,
    alert_on: AlertOnOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run the self-improving system; registers the built-in models if the store has none.

    Each cycle observes every model, plans one task per model (seed rules, bandit, hormones,
    genetic triggers), runs the top ones concurrently, and judges each candidate.

    Example: selfimprove run --cycles 3 --seed 0 --home ./.selfimprove
    Example: selfimprove run --executor ray --ray-address 10.0.0.5:6379
    Example: selfimprove run --alert-url https://hooks.example.com/selfimprove
    """
    from selfimprove.surfaces.alerts import alert_config, watching

    alerts = alert_config(alert_url, alert_on)  # a bad URL is refused before anything loads
    from selfimprove.loop.system import SelfImprovingNeuralSystem
    from selfimprove.tasks import BUILTIN_TASKS

    setup_logging(verbose)
    config = SelfImprovementConfig(
        train_epochs=epochs,
        max_concurrent_improvements=concurrent,
        auto_start=False,
        threads=threads,
        executor=executor,
        ray_address=ray_address,
        device=device,
    )
    outcomes: list[ExperimentOutcome] = []
    with (
        SelfImprovingNeuralSystem(home=home, config=config, seed=seed) as system,
        watching(system.store, alerts),
    ):
        registered = [m.name for m in system.store.list_models()]
        unknown = [n for n in model or [] if n not in (registered or BUILTIN_TASKS)]
        if unknown:  # before the built-ins are trained into an empty store
            raise NotFoundError(
                f"unknown model {unknown[0]!r}; this home has "
                f"{', '.join(registered or BUILTIN_TASKS)}"
                + ("" if registered else " (the built-ins a first run registers)")
                + "."
            )
        if not registered:
            with working("registering the built-in models (weak first incumbents) ·"):
                added = system.improver.ensure_builtin_models()
            err.print(f"registered {', '.join(added)}")
        with progress_bars() as bar:
            job = bar.add_task("cycle 1", total=cycles)
            for i in range(cycles):
                h = system.hormone_system.get_hormone_levels()
                env = system.brain_state.environment()
                active = len(system.genetic_system.get_active_triggers(env))
                bar.update(
                    job,
                    description=(
                        f"cycle {i + 1}/{cycles} · dopamine {h['dopamine']:.2f} "
                        f"cortisol {h['cortisol']:.2f} serotonin {h['serotonin']:.2f} "
                        f"adrenaline {h['adrenaline']:.2f} · {active} trigger(s) active"
                    ),
                )
                system.run_cycle_sync(model)
                outcomes += system.last_outcomes
                bar.advance(job)
        hormones = system.hormone_system.get_hormone_levels()
        health = system.health_report()
    if as_json:
        out.print_json(json.dumps([_outcome_dict(o) for o in outcomes]))
        return
    out.print(_outcome_table(outcomes))
    promoted = sum(o.promoted for o in outcomes)
    rejected = sum(o.decision is not None and not o.promoted for o in outcomes)
    failed = sum(o.status == "failed" for o in outcomes)
    out.print(f"{promoted} promoted, {rejected} rejected, {failed} failed.")
    out.print(
        "hormones: "
        + ", ".join(f"{k} {v:.2f}" for k, v in hormones.items())
        + f" · health {health['overall_health']:.2f}"
    )


def _outcome_dict(o: ExperimentOutcome) -> dict[str, Any]:
    d = {k: getattr(o, k) for k in o.__dataclass_fields__}
    d["decision"] = o.decision.value if o.decision else None
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _no_models(home: Path | None) -> str:
    """What to do in a home without models (``status``, ``models``, and the commands that need
    one)."""
    where = "" if home is None else f" --home {home}"
    return (
        f"no models yet: run `selfimprove run{where}` to register the built-in ones (or register "
        "your own with SelfImprover.register_model, see the README)."
    )


def _require_models(si: SelfImprover, home: Path | None) -> None:
    """Refuse, saying how to get models, when the home has none."""
    if not si.store.list_models():
        raise NotFoundError(f"{si.home} has {_no_models(home)}")


def _parse_params(raw: list[str]) -> dict[str, str]:
    """``-p KEY=VALUE`` options as text; the strategy parses each value to its declared type
    (see :meth:`Strategy.check_params <selfimprove.strategies.Strategy.check_params>`)."""
    params: dict[str, str] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SelfImproveError(
                f"--param must look like KEY=VALUE (e.g. lr=0.001), not {item[:80]!r}."
            )
        if key.strip() in params:
            raise SelfImproveError(f"--param {key.strip()} is given twice; give it once.")
        params[key.strip()] = value
    return params


@app.command()
@handle_errors
def improve(
    model: Annotated[str, typer.Argument(help="The model to improve.")],
    strategy: Annotated[
        str, typer.Option("--strategy", "-s", help=f"One of: {', '.join(STRATEGY_NAMES)}.")
    ] = "train",
    objective: Annotated[
        str | None,
        typer.Option("--objective", help="Objective to target (default: the strategy's own)."),
    ] = None,
    budget_epochs: Annotated[
        int, typer.Option("--budget-epochs", min=1, max=MAX_EPOCHS, help="Training epochs allowed.")
    ] = 30,
    budget_seconds: Annotated[
        float,
        typer.Option(
            "--budget-seconds", min=0.1, max=MAX_SECONDS, help="Wall-clock seconds allowed."
        ),
    ] = 60.0,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Strategy setting KEY=VALUE (repeatable)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Base seed.")] = 0,
    device: DeviceOpt = "cpu",
    home: HomeOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run one judged experiment with a chosen strategy and print the decision.

    Exit code 0 when the experiment ran (promoted or rejected), 1 when it failed.
    Exit code 2 when the strategy is unknown or does not apply (the reason is printed).

    Example: selfimprove improve pattern_recognition --strategy train --budget-epochs 40
    """
    setup_logging(verbose)
    params = _parse_params(param or [])
    from selfimprove.loop.improver import SelfImprover
    from selfimprove.strategies import Budget

    budget = Budget(epochs=budget_epochs, seconds=budget_seconds)
    config = SelfImprovementConfig(device=device)
    with SelfImprover(home, seed=seed, create=False, config=config) as si:
        _require_models(si, home)
        with working(
            f"{escape(strategy)} on {escape(model)} · budget {budget.epochs} epochs or "
            f"{budget.seconds:g} s · elapsed"
        ):
            outcome = si.improve(model, strategy, objective=objective, budget=budget, params=params)
    if outcome.status in ("not_applicable", "skipped"):
        what = "does not apply to" if outcome.status == "not_applicable" else "skipped"
        raise SelfImproveError(f"{outcome.strategy} {what} {model}: {outcome.reason}")
    if as_json:
        out.print_json(json.dumps(_outcome_dict(outcome)))
    else:
        out.print(_outcome_table([outcome]))
    if outcome.status == "failed":
        raise typer.Exit(1)


@app.command()
@handle_errors
def status(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Summary of the store: models, experiments, promotions.

    Example: selfimprove status --json
    """
    from selfimprove.loop.improver import SelfImprover

    with SelfImprover(home, read_only=True) as si:
        info = si.status()
    if as_json:
        out.print_json(json.dumps(info, default=str))
        return
    out.print(f"home    {info['home']}\nstore   {info['store']} (schema {info['schema_version']})")
    by = ", ".join(f"{k} {v}" for k, v in sorted(info["experiments_by_status"].items())) or "none"
    out.print(
        f"models  {info['models']}   experiments {info['experiments']} ({by})   "
        f"promotions {info['promotions']}   last cycle {info['last_cycle']}"
    )
    if not info["models"]:
        out.print(_no_models(home))
    if info["incumbents"]:
        out.print(_models_table(info["incumbents"]))
        _warn_damaged(info["incumbents"])


def _models_table(rows: list[dict[str, Any]], width: int | None = None) -> Table:
    """``status`` and ``models``' table. Below 160 columns (``width``, default the terminal's) a
    compact layout: the task under the model's name, who made the incumbent under
    its version, the test figure under the validation one, the files' state in one column and no
    checksum (``--json`` and a wide terminal show it)."""
    table = Table(title="Models")
    compact = is_compact(width, wide=160)
    if compact:
        table.add_column("model · task", overflow="fold", max_width=28)
        table.add_column("version", no_wrap=True)
        table.add_column("validation [dim]/ test[/]", no_wrap=True)
        table.add_column("files", overflow="fold")
    else:
        for col in ("model", "task", "incumbent", "versions", "made by", "validation", "test"):
            table.add_column(col, no_wrap=col not in ("model", "task"))
        table.add_column("sha256", no_wrap=True)
        for col in ("checkpoint", "manifest"):
            table.add_column(col)
    for r in rows:
        m = r["metrics"]
        key = next((k[len("validation_") :] for k in m if k.startswith("validation_")), None)
        incumbent = f"v{r['incumbent']}" if r["incumbent"] else "—"
        made_by = escape(r["strategy"] or "—")
        validation = f"{key} {_fmt(m.get(f'validation_{key}'))}" if key else "—"
        test = f"{key} {_fmt(m.get(f'test_{key}'))}" if key else "—"
        if not compact:
            table.add_row(
                escape(r["name"]),
                escape(r["task"]),
                incumbent,
                str(r["versions"]),
                made_by,
                validation,
                test,
                (r["sha256"] or "")[:12],
                _file_state(r["checkpoint"]),
                _file_state(r["manifest"]),
            )
            continue
        bad = [f"{what} {r[what]}" for what in ("checkpoint", "manifest") if r[what] not in _OK]
        table.add_row(
            f"{escape(r['name'])}\n[dim]{escape(r['task'])}[/]",
            f"{incumbent} of {r['versions']}\n[dim]{made_by}[/]",
            f"{validation}\n[dim]{test}[/]",
            _file_state("; ".join(bad) if bad else r["checkpoint"]),
        )
    return table


#: A version file's state when nothing is wrong (``None``: the model has no incumbent).
_OK = (None, "ok")


def _file_state(state: str | None) -> str:
    if state is None:
        return "—"
    return "[green]ok[/]" if state == "ok" else f"[bold red]{escape(state)}[/]"


def _warn_damaged(rows: list[dict[str, Any]]) -> None:
    """One line on stderr per incumbent whose files do not match the ledger."""
    for r in rows:
        bad = [f"{what} {r[what]}" for what in ("checkpoint", "manifest") if r[what] not in _OK]
        if bad:
            err.print(
                f"[bold red]warning:[/] {escape(r['name'])} v{r['incumbent']}: "
                f"{escape('; '.join(bad))}; roll back with `selfimprove rollback "
                f"{escape(r['name'])}` or restore the files.",
                highlight=False,
                soft_wrap=True,
            )


@app.command()
@handle_errors
def models(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List the registered models and their incumbents.

    Example: selfimprove models --home ./.selfimprove
    """
    from selfimprove.loop.improver import SelfImprover

    with SelfImprover(home, read_only=True) as si:
        rows = si.models()
    if as_json:
        out.print_json(json.dumps(rows, default=str))
        return
    if not rows:
        out.print(_no_models(home))
        return
    out.print(_models_table(rows))
    _warn_damaged(rows)


@app.command()
@handle_errors
def history(
    model: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=MAX_LIMIT, help="Newest N experiments.")
    ] = 50,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Experiments, newest first, with decisions, statistics and reasons.

    Example: selfimprove history pattern_recognition --limit 10
    """
    from selfimprove.loop.improver import SelfImprover

    with SelfImprover(home, read_only=True) as si:
        records = si.history(model, limit)
        names = {m.id: m.name for m in si.store.list_models()}
    if as_json:
        rows = [
            {
                **{k: getattr(e, k) for k in e.__dataclass_fields__},
                "model": names.get(e.model_id or -1),
            }
            for e in records
        ]
        out.print_json(json.dumps(rows, default=lambda v: getattr(v, "value", str(v))))
        return
    out.print(_history_table(records, names))


def _history_table(
    records: list[ExperimentRecord], names: dict[int, str], width: int | None = None
) -> Table:
    """``history``'s table. Below ``WIDE_TABLE`` columns (``width``, default the terminal's) a
    compact layout keeps the reasons readable: the strategy and cycle go under the model's name,
    the test figures under the validation ones, and the reason loses the figures it repeats."""
    table = Table(title="History")
    table.add_column("id", justify="right", no_wrap=True)
    compact = is_compact(width)
    if compact:
        table.add_column("model · strategy", overflow="fold", max_width=24)
        table.add_column("validation [dim]/ test[/]", no_wrap=True)
        table.add_column("decision", overflow="fold", min_width=16, ratio=1)
    else:
        for col in ("cycle", "model", "strategy", "status", "validation", "test", "p-value"):
            table.add_column(col, no_wrap=col != "model")
        table.add_column("reason", overflow="fold", min_width=16)
    for e in records:
        st = e.statistics
        state = e.decision.value if e.decision else e.status.value
        validation = _arrow(st.get("before"), st.get("after")) if st else "—"
        test = _arrow(st.get("test_before"), st.get("test_after")) if st else "—"
        model = escape(names.get(e.model_id or -1, ""))
        if not compact:
            table.add_row(
                str(e.id),
                str(e.cycle or ""),
                model,
                escape(e.strategy),
                state,
                validation,
                test,
                _fmt(st.get("p_value"), 2),
                escape(e.reason),
            )
            continue
        cycle = f" · cycle {e.cycle}" if e.cycle else ""
        word = {"promote": "[green]promoted[/]", "reject": "[yellow]rejected[/]"}.get(
            state, f"[dim]{escape(state)}[/]"
        )
        why = _why(e.reason) if e.decision else e.reason
        table.add_row(
            str(e.id),
            f"{model}\n[dim]{escape(e.strategy)}{cycle}[/]",
            f"{validation}\n[dim]{test}[/]",
            f"{word}: {escape(why)}" if why else word,
        )
    return table


@app.command()
@handle_errors
def rollback(
    model: Annotated[str, typer.Argument(help="The model to roll back.")],
    to: Annotated[
        int | None,
        typer.Option("--to", min=1, max=MAX_ID, help="Version number (default: previous)."),
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Restore the previous incumbent (or --to VERSION), after checking its checksum.

    Example: selfimprove rollback pattern_recognition --to 2
    """
    from selfimprove.loop.improver import SelfImprover

    with SelfImprover(home, create=False) as si:
        _require_models(si, home)
        before = si.registry.incumbent(model)
        after = si.rollback(model, to)
    out.print(f"{model}: v{before.number} → v{after.number} (sha256 {after.sha256[:12]})")


@app.command()
@handle_errors
def prune(
    older_than_days: Annotated[
        float | None,
        typer.Option(
            "--older-than-days",
            min=0,
            max=MAX_RETENTION_DAYS,
            help="Prune measurements taken, and rejected candidates judged, before this age.",
        ),
    ] = None,
    keep_measurements: Annotated[
        int | None,
        typer.Option(
            "--keep-measurements",
            min=1,
            max=MAX_KEEP,
            help="Keep only the newest N measurements of each capability and split.",
        ),
    ] = None,
    keep_rejected: Annotated[
        int | None,
        typer.Option(
            "--keep-rejected",
            min=0,
            max=MAX_KEEP,
            help="Keep the weights of only the newest N rejected candidates of each model.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would go; change nothing.")
    ] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply the retention policy: delete old measurements and rejected candidates' weights.

    The newest measurement of each series, incumbents, backups (rollback targets),
    experiments, version records and manifests, and events always stay.

    Example: selfimprove prune --older-than-days 30 --keep-rejected 2 --dry-run
    """
    if older_than_days is None and keep_measurements is None and keep_rejected is None:
        raise SelfImproveError(
            "say what to prune: --older-than-days N, --keep-measurements N or --keep-rejected N."
        )
    from selfimprove.loop.improver import SelfImprover

    with SelfImprover(home, create=False) as si:
        report = si.prune(
            older_than_days=older_than_days,
            keep_measurements=keep_measurements,
            keep_rejected=keep_rejected,
            dry_run=dry_run,
        )
    if as_json:
        out.print_json(data=report)
        return
    verb = "would prune" if dry_run else "pruned"
    freed = report["bytes_freed"] / 2**20
    out.print(
        f"{verb} {report['measurements']} measurement(s) and the weights of "
        f"{len(report['checkpoints'])} rejected version(s) ({freed:.1f} MiB)"
    )


@app.command()
@handle_errors
def export(
    fmt: Annotated[str, typer.Option("--format", "-f", help="json or csv.")] = "json",
    table: Annotated[
        str,
        typer.Option("--table", help="For csv: experiments, measurements or cycle_metrics."),
    ] = "experiments",
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", help="File to write (default: stdout).")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Export the ledger: everything as JSON, or the experiments as CSV.

    Example: selfimprove export --format csv --out experiments.csv
    """
    if fmt not in EXPORT_FORMATS:
        raise SelfImproveError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}.")
    from selfimprove.loop.improver import SelfImprover

    with SelfImprover(home, read_only=True) as si:
        text = si.export(fmt, table=table)
    if out_path is None:
        sys.stdout.write(text)
        return
    try:
        out_path.write_text(text)
    except OSError as exc:
        raise SelfImproveError(f"cannot write {out_path}: {exc.strerror}") from None
    err.print(f"wrote {out_path}")


@app.command()
@handle_errors
def dashboard(
    out_file: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "selfimprove-dashboard.html"
    ),
    home: HomeOpt = None,
) -> None:
    """Write the dashboard: one self-contained HTML page (no network needed to view it).

    Example: selfimprove dashboard --out dashboard.html
    """
    from selfimprove.loop.improver import SelfImprover
    from selfimprove.surfaces.report.dashboard import render_dashboard

    with SelfImprover(home, read_only=True) as si, working("rendering the dashboard ·"):
        page = render_dashboard(si)
    try:
        out_file.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise SelfImproveError(f"cannot write {out_file}: {exc.strerror}") from None
    err.print(f"wrote {out_file} ({len(page) / 2**20:.1f} MiB)")


@app.command()
@handle_errors
def serve(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 8765,
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    metrics: Annotated[
        bool,
        typer.Option(
            "--metrics",
            help="Also serve /metrics for Prometheus, read from the ledger at each scrape "
            "(needs the metrics extra).",
        ),
    ] = False,
    alert_url: AlertUrlOpt = None,
    alert_on: AlertOnOpt = None,
    home: HomeOpt = None,
) -> None:
    """Serve the dashboard live and read-only (rendered afresh on every request).

    Example: selfimprove serve --port 8765
    Example: selfimprove serve --metrics --alert-url https://hooks.example.com/selfimprove
    """
    from selfimprove.surfaces.alerts import alert_config, watching

    alerts = alert_config(alert_url, alert_on)  # a bad URL is refused before anything loads
    from selfimprove.surfaces.report.server import make_server

    try:
        server = make_server(home, host=host, port=port, metrics=metrics)
    except OSError as exc:
        raise SelfImproveError(
            f"cannot serve on {host[:80]!r}:{port} ({exc.strerror or exc}); pick another --port "
            "or --host."
        ) from None
    except ValueError as exc:  # a host name the resolver refuses (too long, a NUL byte)
        raise SelfImproveError(
            f"cannot serve on {host[:80]!r}: {exc}; pick another --host."
        ) from None
    err.print(
        f"serving the dashboard on http://{escape(host)}:{port}/"
        + (f" and metrics on http://{escape(host)}:{port}/metrics" if metrics else "")
        + " (Ctrl-C to stop)",
        highlight=False,
    )
    try:
        with watching(server.improver.store, alerts):
            server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command()
@handle_errors
def mcp(
    transport: Annotated[
        str, typer.Option("--transport", help="stdio or streamable-http.")
    ] = "stdio",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="Port for streamable-http.")
    ] = 8766,
    host: Annotated[str, typer.Option("--host", help="Interface for streamable-http.")] = (
        "127.0.0.1"
    ),
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Serve only the tools that read.")
    ] = False,
    allow_code_approval: Annotated[
        bool,
        typer.Option("--allow-code-approval", help="Also serve code-improvement approval tools."),
    ] = False,
    code_root: Annotated[
        Path | None,
        typer.Option(
            "--code-root",
            help="With --allow-code-approval: the only folder code approval may change, where "
            "its check runs (default: the working folder).",
        ),
    ] = None,
    check_command: Annotated[
        str | None,
        typer.Option(
            "--check-command",
            help="With --allow-code-approval: the only check command approval runs (default: "
            "none); a proposal recording another one is refused.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Base seed.")] = 0,
    device: DeviceOpt = "cpu",
    home: HomeOpt = None,
) -> None:
    """Serve the system to an AI assistant over MCP (stdio by default).

    Example: selfimprove mcp --home ./.selfimprove --read-only
    """
    from selfimprove.loop.improver import SelfImprover
    from selfimprove.loop.system import SelfImprovingNeuralSystem
    from selfimprove.surfaces.integration import SelfImprovementIntegration
    from selfimprove.surfaces.mcp_server import build_server

    if transport not in ("stdio", "streamable-http"):
        raise SelfImproveError(
            f"--transport must be 'stdio' or 'streamable-http', not {transport!r}."
        )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)
    # --read-only: an existing home, opened without writing (nothing is created).
    improver = SelfImprover(
        home,
        config=SelfImprovementConfig(auto_start=False, device=device),
        seed=seed,
        read_only=read_only,
    )
    integration = SelfImprovementIntegration(
        system=SelfImprovingNeuralSystem(improver=improver), read_only=read_only
    )
    server = build_server(
        integration,
        read_only=read_only,
        allow_code_approval=allow_code_approval,
        code_root=code_root,
        check_command=check_command,
    )
    if transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=host, port=port)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
