"""What every ``selfimprove`` command shares: the consoles, common options, error handling."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from typer.core import TyperGroup

from selfimprove.config import check_device_name
from selfimprove.errors import ConfigError, SelfImproveError

#: Largest id or version number a command accepts: what a 32-bit INTEGER column holds on every
#: backend (SQLite's INTEGER is 64-bit, PostgreSQL's 32).
MAX_ID = 2**31 - 1
#: Most rows a listing returns.
MAX_LIMIT = 100_000
#: Terminals narrower than this get the tables' compact layouts (fewer, stacked columns).
WIDE_TABLE = 140

__all__ = [
    "WIDE_TABLE",
    "DeviceOpt",
    "F",
    "HomeOpt",
    "JsonOpt",
    "OneLineErrors",
    "VerboseOpt",
    "err",
    "error_line",
    "handle_errors",
    "is_compact",
    "out",
    "progress_bars",
    "setup_logging",
    "working",
]


def _out_width() -> int | None:
    """stdout's width: ``$COLUMNS`` when set, else the terminal's; piped output without
    ``$COLUMNS`` gets a wide table instead of rich's 80-column default."""
    if os.environ.get("COLUMNS", "").strip().isdigit() or sys.stdout.isatty():
        return None  # rich reads $COLUMNS, then the terminal
    return 160


out = Console(width=_out_width())
err = Console(stderr=True)


def is_compact(width: int | None = None, wide: int = WIDE_TABLE) -> bool:
    """Whether a table ``width`` columns wide (default: stdout's) needs its compact layout: it
    does below ``wide`` columns (what its full layout needs)."""
    return (out.width if width is None else width) < wide


def _home_path(value: str) -> Path:
    """``--home`` as typed: an empty value is refused (it would mean the current folder)."""
    if not value.strip():
        raise typer.BadParameter("the path is empty; pass a folder path or leave --home out.")
    return Path(value)


HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        parser=_home_path,
        help="Home folder (default $SELFIMPROVE_HOME or ./.selfimprove).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _device_name(value: str) -> str:
    """``--device`` as typed: a known name (whether the device is present is checked when the
    command starts, before anything is written)."""
    try:
        return check_device_name(value)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        parser=_device_name,
        help="Where models train and are measured: cpu, cuda, cuda:N or auto (CUDA if present).",
    ),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log what the library does.")]

F = TypeVar("F", bound=Callable[..., Any])


#: Characters that would break the line or steer the terminal (escaped when shown).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def error_line(message: str) -> None:
    """Print ``error: message`` on stderr as one line: control characters a user typed (a
    newline in a name) are shown escaped, and ``[`` in it is text, not rich markup."""
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], message)
    err.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)


def handle_errors(fn: F) -> F:
    """Turn the package's errors into one line on stderr and exit code 2 (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SelfImproveError as exc:
            error_line(str(exc))
            raise typer.Exit(2) from None
        except OSError as exc:
            if exc.filename is None:  # not about a path the user gave: a real fault, shown whole
                raise
            # A path the command could not use (too long, not permitted, a file in the way).
            name = str(exc.filename)
            shown = name if len(name) <= 120 else name[:60] + "…" + name[-40:]
            error_line(f"cannot use {shown}: {exc.strerror or exc}; pass another path.")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def working(description: str) -> Iterator[None]:
    """A spinner on stderr with what is being done (rich markup) and the time elapsed; it is
    gone when the work ends (and never shown when stderr is not a terminal)."""
    if not err.is_terminal:
        yield
        return
    with Progress(
        SpinnerColumn(),
        TextColumn(description),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        progress.add_task("", total=None)
        yield


def progress_bars() -> Progress:
    """Counted progress bars on stderr (what, bar, done/total, time elapsed), gone when the
    work ends; use as a context manager and add a task per bar."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def setup_logging(verbose: bool) -> None:
    """Library logs to stderr through rich: warnings by default, everything with --verbose."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False)],
        force=True,
    )


class OneLineErrors(TyperGroup):
    """A command group whose usage errors (a bad option value, an unknown option or command, a
    missing argument) are one line on stderr, ``error: …``, and exit code 2, like the package's
    own errors; ``--help`` and a bare group (which shows its help) are unchanged."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # typer's click errors: usage errors among them
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: show its help
                help_text = exc.ctx.get_help()  # type: ignore[attr-defined]
                if help_text:  # rich help prints itself and returns ""
                    typer.echo(help_text)
                sys.exit(exc.exit_code)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            lines = (line.strip() for line in exc.format_message().splitlines())
            error_line(" ".join(line for line in lines if line) + hint)
            sys.exit(exc.exit_code)
        except typer.Abort:
            err.print("aborted")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)
