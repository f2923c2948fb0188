"""``selfimprove engine …``: the Self-Improvement Engine from the command line (typer + rich).

Commands: ``capabilities``, ``weaknesses``, ``experiments``, ``improvements``,
``propose FILE FUNCTION``, ``show ID``, ``approve ID``, ``reject ID``, ``rollback ID``,
``assess``. Each takes ``--home`` and ``--json``; every error a user can cause is one line on
stderr and exit code 2, with nothing changed. Approval runs only the check command and root
given here (``--check-command``, ``--root``), never the ones in the ledger. Only this module
(and :mod:`selfimprove.surfaces.cli.app`, which mounts it) prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import math
import shlex
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from selfimprove.config import MAX_IMPROVEMENT_NAME
from selfimprove.errors import SelfImproveError
from selfimprove.surfaces.cli.common import (
    MAX_ID,
    MAX_LIMIT,
    HomeOpt,
    JsonOpt,
    err,
    handle_errors,
    out,
    working,
)

if TYPE_CHECKING:  # the engine and the store are imported when a command runs (fast --help)
    from selfimprove.engine import ApprovalPlan, SelfImprovementEngine
    from selfimprove.store import CodeImprovementRecord

__all__ = ["IMPROVEMENT_STATUSES", "engine_app"]

#: Most bytes of new code ``propose`` takes (``--code`` or ``--code-file``): one function.
MAX_CODE_BYTES = 1 << 20
#: Most characters of a proposal's ``--description`` (what the store's name column holds).
MAX_DESCRIPTION = MAX_IMPROVEMENT_NAME
#: Lines of the diff ``propose`` prints (``show ID`` prints it all).
MAX_DIFF_LINES = 60

#: ``CodeImprovementStatus``'s values, for ``--status`` (checked against the enum by a test, so
#: that ``--help`` needs no store import).
IMPROVEMENT_STATUSES = ("pending", "applied", "rejected", "rolled_back")

engine_app = typer.Typer(
    name="engine",
    help=(
        "The Self-Improvement Engine: capabilities, weaknesses, experiments, code "
        "improvements (approve / reject / rollback) and the self-assessment."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ActorOpt = Annotated[
    str | None,
    typer.Option("--actor", help="Who acts, for the audit trail (default: your user name)."),
]
RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help=(
            "Folder code changes are confined to and the check runs in (default: the working "
            "folder); a proposal recorded under another root is refused."
        ),
    ),
]
CheckOpt = Annotated[
    str | None,
    typer.Option(
        "--check-command",
        help=(
            "The check run before and after the change, split like a shell would (no shell "
            "runs; default: pytest where the root has tests, else none); a proposal recorded "
            "with another command is refused."
        ),
    ),
]
DigestOpt = Annotated[
    str | None,
    typer.Option(
        "--digest",
        help="Approve only if the improvement's digest starts with this (from `show`, >= 12 hex).",
    ),
]


def _plain(value: Any) -> Any:
    """JSON-ready form of records: datetimes as ISO text, enums as values, bytes as a size."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat() + ("Z" if value.tzinfo is None else "")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return {"bytes": len(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _json(data: Any) -> None:
    out.print_json(json.dumps(_plain(data)))


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}g}"


def _pct(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.1%}"


def _gap(value: float | None) -> str:
    if value is None or value == 0:
        return "—"
    return "∞" if not math.isfinite(value) else f"{value:.1%}"


def _code_engine(
    home: Path | None,
    root: Path | None,
    check_command: str | Sequence[str] | None = None,
    timeout: float = 300.0,
    *,
    create: bool = False,
) -> contextlib.AbstractContextManager[SelfImprovementEngine]:
    """The engine configured with what approval and rollback may use: this root (default: the
    working folder) and this check command, never the ones recorded in the ledger (``create``:
    see :func:`_existing_engine`)."""
    return _existing_engine(
        home,
        create=create,
        root=root if root is not None else Path.cwd(),
        check_command=check_command,
        check_timeout_s=timeout,
    )


@contextlib.contextmanager
def _existing_engine(
    home: Path | None, *, read_only: bool = False, create: bool = False, **code: Any
) -> Iterator[SelfImprovementEngine]:
    """The engine over an existing home's store: a missing home is an error (one line, exit 2)
    and nothing is created; ``read_only`` also reads a home it may not write (from a copy);
    ``create`` makes a missing home instead (``propose``, the first write of a code-only user)."""
    from selfimprove.engine import SelfImprovementEngine
    from selfimprove.loop.home import open_store

    opened = open_store(home, create=create, read_only=read_only)
    try:
        with SelfImprovementEngine(store=opened.store, home=opened.home, **code) as engine:
            yield engine
    finally:
        opened.close()


@engine_app.command()
@handle_errors
def capabilities(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Every capability: current value, baseline, target, direction-aware gap and level.

    The neural system's model objectives appear as <model>/<objective>.

    Example: selfimprove engine capabilities --home ./.selfimprove
    """
    with _existing_engine(home) as engine:
        profiles = engine.profile_all_capabilities()
    if as_json:
        _json(profiles)
        return
    if not profiles:
        out.print("no capabilities yet: register some, or run `selfimprove run`.")
        return
    table = Table(title="Capabilities")
    for col in ("name", "better", "baseline", "current", "target", "gap", "level", "change", "n"):
        table.add_column(col, no_wrap=col != "name")
    for p in profiles:
        unit = f" {p.unit}" if p.unit else ""
        table.add_row(
            p.name,
            "lower" if p.direction == "minimize" else "higher",
            _fmt(p.baseline) + (unit if p.baseline is not None else ""),
            _fmt(p.current) + (unit if p.current is not None else ""),
            _fmt(p.target) + (unit if p.target is not None else ""),
            _gap(p.gap),
            p.level,
            _pct(p.improvement),
            str(p.measurements),
        )
    out.print(table)


@engine_app.command()
@handle_errors
def weaknesses(
    min_impact: Annotated[
        float, typer.Option("--min-impact", min=0.0, max=1.0, help="Leave out lower impacts.")
    ] = 0.0,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also resolved and won't-fix weaknesses.")
    ] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Weaknesses, most urgent first (found from every capability's gap to its target).

    Example: selfimprove engine weaknesses --min-impact 0.5
    """
    with _existing_engine(home) as engine:
        found = engine.analyze_weaknesses(min_impact, include_closed=show_all)
    if as_json:
        _json(found)
        return
    if not found:
        out.print("no weaknesses" + ("" if show_all else " open") + ".")
        return
    table = Table(title="Weaknesses")
    for col in ("id", "severity", "type", "status", "impact", "priority", "gap"):
        table.add_column(col, no_wrap=True)
    table.add_column("what", overflow="fold")
    for w in found:
        table.add_row(
            str(w.id),
            w.severity,
            w.type,
            w.status.value,
            f"{w.impact:.1f}",
            f"{w.priority:.2f}",
            _gap(w.gap),
            w.description or w.name,
        )
    out.print(table)


@engine_app.command()
@handle_errors
def experiments(
    weakness: Annotated[
        int | None,
        typer.Option("--weakness", min=1, max=MAX_ID, help="Only this weakness's experiments."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=MAX_LIMIT, help="Newest N experiments.")
    ] = 50,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Experiments, newest first: the engine's (with their weakness) and the neural system's.

    Example: selfimprove engine experiments --weakness 3
    """
    from selfimprove.store import Decision

    with _existing_engine(home) as engine:
        if weakness is not None:
            engine.store.get_weakness(weakness)
            records = list(reversed(engine.store.list_weakness_experiments(weakness)))[:limit]
        else:
            records = engine.store.list_experiments(limit=limit, newest_first=True)
    if as_json:
        _json(records)
        return
    if not records:
        out.print("no experiments yet.")
        return
    table = Table(title="Experiments")
    for col in ("id", "weakness", "approach", "status", "expected", "measured", "p"):
        table.add_column(col, no_wrap=True)
    table.add_column("reason", overflow="fold")
    for e in records:
        st = e.statistics
        if e.decision is None:
            state = e.status.value
        elif e.weakness_id is not None:  # the engine's: a test, not a promotion
            state = "success" if e.decision is Decision.PROMOTE else "no success"
        else:
            state = "promoted" if e.decision is Decision.PROMOTE else "rejected"
        table.add_row(
            str(e.id),
            str(e.weakness_id) if e.weakness_id is not None else "—",
            e.strategy,
            state,
            _pct(e.expected_improvement),
            _pct(st.get("relative_improvement")),
            _fmt(st.get("p_value"), 2),
            e.reason or e.hypothesis,
        )
    out.print(table)


def _improvement_line(rec: CodeImprovementRecord) -> str:
    return (
        f"improvement {rec.id} ({rec.name}): {rec.status.value} — {rec.function_name} in "
        f"{rec.file_path}; sha256 {rec.sha256_before[:12]} → {rec.sha256_after[:12]}"
    )


@engine_app.command()
@handle_errors
def improvements(
    status: Annotated[
        str | None,
        typer.Option("--status", help=f"Only: {', '.join(IMPROVEMENT_STATUSES)}."),
    ] = None,
    show_diff: Annotated[
        bool, typer.Option("--diff", help="Also print each code improvement's unified diff.")
    ] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Code improvements (approve / reject / roll back by id) and the models' promotions.

    Each code improvement shows the file, the function and the check command it records;
    --diff (or `show ID`) prints the change itself.

    Example: selfimprove engine improvements --status pending --diff
    """
    if status is not None and status not in IMPROVEMENT_STATUSES:
        raise SelfImproveError(
            f"--status must be one of {', '.join(IMPROVEMENT_STATUSES)}, not {status!r}."
        )
    from selfimprove.engine import command_line, unified_diff
    from selfimprove.store import Decision

    with _existing_engine(home, read_only=True) as engine:
        code = engine.list_improvements(status)
        promotions = (
            [
                e
                for e in engine.store.list_experiments(newest_first=True)
                if e.weakness_id is None and e.decision is Decision.PROMOTE
            ]
            if status is None
            else []
        )
        names = {m.id: m.name for m in engine.store.list_models()}
    if as_json:
        rows = [_code_row(r, show_diff) for r in code]
        _json({"code": rows, "model_promotions": promotions})
        return
    if not code and not promotions:
        out.print("no improvements yet.")
        return
    if code:
        table = Table(title="Code improvements")
        for col in ("id", "status", "name", "function", "sha256 before → after", "by", "effect"):
            table.add_column(col, no_wrap=col in ("id", "status"))
        table.add_column("file", overflow="fold")
        table.add_column("check command", overflow="fold")
        for r in code:
            perf = r.performance
            effect = (
                f"{_pct(perf.get('improvement'))} (p={_fmt(perf.get('p_value'), 2)})"
                if perf
                else "—"
            )
            table.add_row(
                str(r.id),
                r.status.value,
                Text(r.name),
                r.function_name,
                f"{r.sha256_before[:10]} → {r.sha256_after[:10]}",
                r.decided_by or r.requested_by,
                effect,
                Text(r.file_path),
                Text(command_line(r.check_command)),
            )
        out.print(table)
        for r in code if show_diff else []:
            out.print(f"improvement {r.id}: {r.function_name} in", Text(r.file_path))
            out.print(Text(unified_diff(r).rstrip("\n")), soft_wrap=True)
    if promotions:
        table = Table(title="Model promotions (roll back with `selfimprove rollback MODEL`)")
        for col in ("experiment", "model", "strategy", "objective", "gain", "when"):
            table.add_column(col, no_wrap=True)
        for e in promotions:
            table.add_row(
                str(e.id),
                names.get(e.model_id or -1, "—"),
                e.strategy,
                e.objective or "—",
                _pct(e.statistics.get("relative_improvement")),
                e.finished_at.strftime("%Y-%m-%d %H:%M") if e.finished_at else "—",
            )
        out.print(table)


def _code_row(rec: CodeImprovementRecord, with_diff: bool) -> dict[str, Any]:
    """A code improvement as JSON: no file contents; the command line, the diff if asked."""
    from selfimprove.engine import command_line, unified_diff

    row = {k: v for k, v in _plain(rec).items() if not k.endswith("_content")}
    row["command_line"] = command_line(rec.check_command)
    if with_diff:
        row["diff"] = unified_diff(rec)
    return row


def _digest_state(engine: SelfImprovementEngine, rec: CodeImprovementRecord) -> tuple[str, str]:
    """The improvement's digest now, and whether it matches the one pinned at proposal."""
    from selfimprove.engine import pinned_digest, record_digest

    digest, pinned = record_digest(rec), pinned_digest(engine.get_audit_trail(rec.id))
    if pinned is None:
        return digest, "none was pinned at proposal: it cannot be approved"
    if digest != pinned:
        return digest, f"ALTERED since proposal (pinned {pinned}): it cannot be approved"
    return digest, "as pinned at proposal"


@engine_app.command()
@handle_errors
def show(
    improvement_id: Annotated[int, typer.Argument(min=1, max=MAX_ID, help="A code improvement.")],
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One code improvement in full: file, function, root, check command, digest and diff.

    Read it before approving: approval writes exactly this diff and runs only the check
    command it is given (pass the digest shown with approve --digest to pin what you read).

    Example: selfimprove engine show 3
    """
    from selfimprove.engine import command_line, unified_diff

    with _existing_engine(home, read_only=True) as engine:
        rec = engine.store.get_code_improvement(improvement_id)
        digest, state = _digest_state(engine, rec)
    if as_json:
        _json({**_code_row(rec, True), "digest": digest, "digest_state": state})
        return
    out.print(Text(f"improvement {rec.id} ({rec.name}): {rec.status.value}"))
    for label, value in (
        ("file", rec.file_path),
        ("function", rec.function_name),
        ("root", rec.root),
        ("check command", command_line(rec.check_command)),
        ("proposed by", rec.requested_by),
        ("digest", f"{digest} ({state})"),
    ):
        out.print(Text(f"{label}: {value}"), soft_wrap=True)
    out.print(Text(unified_diff(rec).rstrip("\n")), soft_wrap=True)


def _new_code(code: str | None, code_file: str | None) -> str:
    """The new function's text from ``--code`` or ``--code-file`` (``-``: stdin): UTF-8, not
    blank, at most :data:`MAX_CODE_BYTES` (whether it parses is the engine's check)."""
    if (code is None) == (code_file is None):
        raise SelfImproveError(
            "pass the new function once: --code TEXT or --code-file PATH (- for stdin)"
            + (", not both." if code is not None else ".")
        )
    if code is not None:
        where = "--code"
        data = code.encode("utf-8", "surrogateescape")  # undecodable argv bytes stay invalid
    elif code_file == "-":
        where = "the code read from stdin"
        if sys.stdin.isatty():
            err.print("reading the new function from stdin (end it with Ctrl-D)")
        data = sys.stdin.buffer.read(MAX_CODE_BYTES + 1)
    else:
        where = f"--code-file {code_file}"
        with open(str(code_file), "rb") as fh:  # an OSError names the file: one line, exit 2
            data = fh.read(MAX_CODE_BYTES + 1)
    if len(data) > MAX_CODE_BYTES:
        raise SelfImproveError(
            f"{where} is over {MAX_CODE_BYTES} bytes; a proposal replaces one function."
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SelfImproveError(
            f"{where} is not UTF-8 text (byte {exc.start}); save it as UTF-8."
        ) from None
    if not text.strip():
        raise SelfImproveError(f"{where} is empty; pass the new definition of the function.")
    return text


def _next_commands(
    improvement_id: int,
    digest: str,
    home: Path | None,
    root: Path | None,
    check_command: str | None,
) -> dict[str, str]:
    """The commands that read and approve a new proposal, with the options it was made with
    (approval refuses another root or check command)."""
    where = ["--home", str(home)] if home is not None else []
    code = ["--root", str(root)] if root is not None else []
    code += ["--check-command", check_command] if check_command is not None else []
    base = ["selfimprove", "engine"]
    return {
        "show": _shell([*base, "show", str(improvement_id), *where]),
        "approve": _shell(
            [*base, "approve", str(improvement_id), *where, *code, "--digest", digest[:16]]
        ),
        "reject": _shell([*base, "reject", str(improvement_id), *where]),
    }


def _shell(argv: Sequence[str]) -> str:
    """``argv`` as a line a POSIX shell splits back into it: an argument holding single quotes
    (a check command's Python) in double quotes where nothing in it expands, else
    :func:`shlex.quote`'s form."""
    return " ".join(
        f'"{a}"' if "'" in a and not set(a) & set('"$`\\!') else shlex.quote(a) for a in argv
    )


@engine_app.command()
@handle_errors
def propose(
    file: Annotated[
        str, typer.Argument(help="The source file (relative to --root), inside --root.")
    ],
    function: Annotated[str, typer.Argument(help="The function to replace: name or Class.method.")],
    description: Annotated[
        str, typer.Option("--description", help="What the change is, in a few words.")
    ],
    code: Annotated[
        str | None, typer.Option("--code", help="The function's new definition, as text.")
    ] = None,
    code_file: Annotated[
        str | None,
        typer.Option(
            "--code-file", help="A file holding the function's new definition (- for stdin)."
        ),
    ] = None,
    actor: ActorOpt = None,
    root: RootOpt = None,
    check_command: CheckOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Propose replacing one function of a file: recorded as pending, nothing written or run.

    The proposal pins the file's exact bytes before and after, the root and the check command
    approval must be given (default: pytest where the root has tests, else none), and a digest
    over all of it. It prints the id, the digest, the diff and the commands that show and
    approve it. The home is created when missing.

    Example: selfimprove engine propose mymodule.py square --code-file faster.py
    --description "multiply, do not loop" --check-command "python -m pytest -q"
    """
    name = description.strip()
    if not name or len(name) > MAX_DESCRIPTION:
        raise SelfImproveError(
            f"--description must be 1 to {MAX_DESCRIPTION} characters, not {len(name)}; "
            "say what the change is in a few words."
        )
    new_code = _new_code(code, code_file)
    from selfimprove.engine import command_line, unified_diff
    from selfimprove.engine.codepatch import confine, parse_command, replace_function

    # The engine checks all of this again when it records the proposal; checked first here so
    # that a refused proposal leaves no new home behind.
    argv = parse_command(check_command) if check_command is not None else None
    path = confine(file, root if root is not None else Path.cwd())
    replace_function(path.read_bytes(), function, new_code, filename=str(path))
    with _code_engine(home, root, argv, create=True) as engine:
        rec = engine.apply_improvement(name, file, function, new_code, actor=actor)
        digest, state = _digest_state(engine, rec)
    steps = _next_commands(rec.id, digest, home, root, check_command)
    if as_json:
        _json({**_code_row(rec, True), "digest": digest, "digest_state": state, "next": steps})
        return
    out.print(Text(_improvement_line(rec)), soft_wrap=True)
    out.print(
        Text(f"check command: {command_line(rec.check_command)} (in {rec.root})"), soft_wrap=True
    )
    out.print(Text(f"digest: {digest}"), soft_wrap=True)
    diff = unified_diff(rec).splitlines()
    shown = diff[:MAX_DIFF_LINES]
    if len(diff) > len(shown):
        shown.append(f"… {len(diff) - len(shown)} more lines: {steps['show']}")
    out.print(Text("\n".join(shown)), soft_wrap=True)
    out.print("the file is untouched until approved:")
    for label, step in (("read it:", "show"), ("approve:", "approve"), ("or reject:", "reject")):
        out.print(Text(f"  {label:<11}{steps[step]}"), soft_wrap=True)


def _announce(plan: ApprovalPlan, as_json: bool) -> None:
    """Say what approval will run and write, before it does (stderr when stdout is JSON)."""
    console = err if as_json else out
    console.print(
        Text(
            f"improvement {plan.improvement_id} ({plan.name}): will write {plan.function_name} "
            f"in {plan.file_path}\ncheck command: {plan.command_line} (in {plan.root}, before "
            f"and after)\ndigest: {plan.digest}"
        ),
        soft_wrap=True,
    )


@engine_app.command()
@handle_errors
def approve(
    improvement_id: Annotated[
        int, typer.Argument(min=1, max=MAX_ID, help="A pending code improvement.")
    ],
    actor: ActorOpt = None,
    root: RootOpt = None,
    check_command: CheckOpt = None,
    digest: DigestOpt = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1.0, help="Seconds allowed to each check run.")
    ] = 300.0,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply a pending code improvement: check before, write, check after, keep or restore.

    Only --check-command runs, in --root (default: the working folder); a proposal recorded
    with another command or root, or altered in the database since, is refused before
    anything runs. What will run and be written is printed first.

    Exit code 0 when applied, 1 when the check command failed after the change (the file was
    restored and the improvement rejected), 2 when it was refused with nothing changed.

    Example: selfimprove engine approve 3 --root . --check-command "python -m pytest -q"
    """
    from selfimprove.store import CodeImprovementStatus

    with _code_engine(home, root, check_command, timeout) as engine:
        plan = engine.plan_approval(improvement_id, digest)
        _announce(plan, as_json)
        with working(f"checking and applying improvement {improvement_id} ·"):
            rec = engine.approve_improvement(improvement_id, actor, expected_digest=plan.digest)
    if as_json:
        _json({k: v for k, v in _plain(rec).items() if not k.endswith("_content")})
    else:
        out.print(Text(_improvement_line(rec)))
        if rec.performance:
            p = rec.performance
            out.print(
                f"measured effect: {_fmt(p.get('before'))} → {_fmt(p.get('after'))} "
                f"({_pct(p.get('improvement'))}, p={_fmt(p.get('p_value'), 2)}, "
                f"confidence {p.get('confidence')})"
            )
        if rec.status is CodeImprovementStatus.REJECTED:
            out.print(rec.reason)
    if rec.status is not CodeImprovementStatus.APPLIED:
        raise typer.Exit(1)


@engine_app.command()
@handle_errors
def reject(
    improvement_id: Annotated[
        int, typer.Argument(min=1, max=MAX_ID, help="A pending code improvement.")
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the record.")] = "",
    actor: ActorOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject a pending code improvement (its file was never touched).

    Example: selfimprove engine reject 3 --reason "changes the public API"
    """
    with _existing_engine(home) as engine:
        rec = engine.reject_improvement(improvement_id, reason, actor)
    if as_json:
        _json({k: v for k, v in _plain(rec).items() if not k.endswith("_content")})
        return
    out.print(Text(_improvement_line(rec)))


@engine_app.command()
@handle_errors
def rollback(
    improvement_id: Annotated[
        int, typer.Argument(min=1, max=MAX_ID, help="An applied code improvement.")
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the record.")] = "",
    actor: ActorOpt = None,
    root: RootOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore the exact bytes a file had before an applied improvement (hash verified).

    Refused, with nothing changed, when the file was edited since the improvement was applied,
    when it was recorded under another root than --root (default: the working folder), or when
    its row was altered in the database.

    Example: selfimprove engine rollback 3 --root . --reason "slower under load"
    """
    with _code_engine(home, root) as engine:
        rec = engine.rollback_improvement(improvement_id, actor, reason)
    if as_json:
        _json({k: v for k, v in _plain(rec).items() if not k.endswith("_content")})
        return
    out.print(Text(_improvement_line(rec)))


@engine_app.command()
@handle_errors
def assess(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Self-assessment: learning quality score and grade, with the figures behind them.

    Score = 0.6 × share of experiments that reached their expected improvement + 0.4 × share
    of weaknesses resolved; grade A > 0.8, B > 0.6, C > 0.4, else D.

    Example: selfimprove engine assess --json
    """
    with _existing_engine(home) as engine:
        a = engine.get_self_assessment()
    if as_json:
        _json(a)
        return
    c = a.components
    out.print(
        f"learning quality {a.learning_quality_score:.3f} → grade [bold]{a.grade}[/]  "
        f"(0.6 × {c['exceeded']}/{c['with_expectation']} experiments beat their expectation "
        f"+ 0.4 × {c['resolved']}/{c['weaknesses']} weaknesses resolved)"
    )
    caps, weak, exps, imps = a.capabilities, a.weaknesses, a.experiments, a.improvements
    out.print(
        f"capabilities {caps['total']} ({caps['at_target']} at target, "
        f"{caps['below_target']} below; mean change {_pct(caps['mean_improvement'])})"
    )
    sev = ", ".join(f"{k} {v}" for k, v in weak["open_by_severity"].items() if v) or "none"
    out.print(f"weaknesses {weak['total']} (open by severity: {sev})")
    rate = exps["success_rate"]
    out.print(
        f"experiments {exps['total']} ({exps['finished']} finished, success rate "
        f"{'—' if rate is None else f'{rate:.0%}'})   applied improvements "
        f"{imps['applied_total']} (code {imps['code_applied']}, model promotions "
        f"{imps['model_promotions']})   meta-learnings {a.meta_learnings['count']}"
    )
    t = a.trend
    extra = (
        f" (success rate {t['earlier_success_rate']:.0%} → {t['recent_success_rate']:.0%}, "
        f"windows of {t['window']})"
        if "window" in t
        else ""
    )
    out.print(f"trend {t['direction']}{extra}")
