"""What every ``selfimprove`` command shares: the consoles, common options, error handling."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler

from selfimprove.errors import SelfImproveError

#: Largest id or version number a command accepts: what a 32-bit INTEGER column holds on every
#: backend (SQLite's INTEGER is 64-bit, PostgreSQL's 32).
MAX_ID = 2**31 - 1
#: Most rows a listing returns.
MAX_LIMIT = 100_000

__all__ = ["F", "HomeOpt", "JsonOpt", "VerboseOpt", "err", "handle_errors", "out", "setup_logging"]

# Piped output gets a wide table instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="Home folder (default $SELFIMPROVE_HOME or ./.selfimprove)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log what the library does.")]

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn the package's errors into one line on stderr and exit code 2 (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SelfImproveError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def setup_logging(verbose: bool) -> None:
    """Library logs to stderr through rich: warnings by default, everything with --verbose."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False)],
        force=True,
    )
