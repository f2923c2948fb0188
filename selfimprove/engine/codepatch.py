"""Code improvements at the file level: replace one function, run a check, undo exactly.

The engine (:mod:`selfimprove.engine`) keeps the ledger (approval, audit trail, statuses); this
module holds the parts that touch files and processes, as plain functions:

- :func:`replace_function` swaps one function or method of a source file for new code and
  leaves every other byte of the file as it was;
- :func:`confine` refuses a path outside the configured root (symlinks resolved first), and
  :func:`resolve_root` resolves that root;
- :func:`atomic_write` replaces a file's bytes in one rename (temp file, fsync, rename);
- :func:`run_command` runs a check command (tests or a benchmark) with a timeout, in its own
  process group, and reads a number from its last line of output when it prints one, and the
  counts of pytest's summary line when the command is pytest;
- :func:`default_check` is that command where none is configured: pytest, when the root has
  tests (:func:`has_tests`) and this interpreter has pytest.

Why libcst: it parses Python into a *concrete* syntax tree that keeps every comment, blank
line and bit of whitespace, and rendering an untouched tree gives back the exact source. So
replacing one ``FunctionDef`` node changes that function's text and nothing else. The standard
``ast`` module drops comments and formatting (``ast.unparse`` would rewrite the whole file), and
splicing by line numbers or regular expressions breaks on decorators, nested classes,
multi-line signatures and functions defined twice. The result is still checked, not trusted:
:func:`replace_function` verifies that the text before and after the function's span is
byte-identical and that the new file compiles.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, WhitespaceInclusivePositionProvider

from selfimprove.errors import CodePatchError, ConfigError

__all__ = [
    "CommandResult",
    "FileDigests",
    "FunctionPatch",
    "atomic_write",
    "confine",
    "default_check",
    "digests",
    "has_tests",
    "list_functions",
    "parse_command",
    "pytest_counts",
    "replace_function",
    "resolve_root",
    "run_command",
]

logger = logging.getLogger(__name__)

#: Characters of a command's output kept in the ledger.
OUTPUT_TAIL_CHARS = 2000


@dataclass(frozen=True)
class FileDigests:
    """SHA-256 (what every check uses) and MD5 (kept because seed 002 records it)."""

    sha256: str
    md5: str


def digests(data: bytes) -> FileDigests:
    """The SHA-256 and MD5 hex digests of ``data``."""
    return FileDigests(hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())


# ---------------------------------------------------------------------- paths and files
def resolve_root(root: str | os.PathLike[str]) -> Path:
    """The real path of a root folder (``~`` expanded, symlinks followed).

    Raises:
        ConfigError: It cannot be resolved (an unknown ``~user``, a NUL byte, a link loop).
    """
    try:
        return Path(root).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"cannot resolve root {os.fspath(root)!r} ({exc}); pass a folder."
        ) from None


def confine(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> Path:
    """The real path of ``path``, provided it lies inside ``root``.

    Both are resolved first (symlinks followed, ``..`` removed), so a link inside the root that
    points outside it is refused as well.

    Args:
        path: The file to change (relative paths are taken from ``root``).
        root: The folder that code improvements may touch.

    Returns:
        The resolved path.

    Raises:
        CodePatchError: The path lies outside the root, or is not a regular file.
    """
    try:
        real_root = Path(root).expanduser().resolve()
        raw = Path(path).expanduser()
        real = (raw if raw.is_absolute() else real_root / raw).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # ~unknown user, NUL byte, link loop
        raise CodePatchError(f"cannot resolve {path!s} under {root!s} ({exc}).") from None
    if not real.is_relative_to(real_root):
        raise CodePatchError(
            f"{path} resolves to {real}, outside the allowed root {real_root}; "
            "only files under the root may be changed (configure root= or --root)."
        )
    if not real.is_file():
        raise CodePatchError(f"{real} is not an existing regular file; pass a Python source file.")
    return real


def atomic_write(path: Path, data: bytes) -> None:
    """Replace the bytes of ``path`` in one rename, keeping its permission bits.

    The data goes to a temporary file in the same folder, is fsynced, and is renamed over the
    target, so a crash leaves either the old or the new file, never a half-written one.

    Raises:
        CodePatchError: The file cannot be written (the original is left in place).
    """
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = 0o644
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise CodePatchError(f"cannot write {path}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------- libcst
@dataclass(frozen=True)
class FunctionPatch:
    """One function replaced in one source text.

    Attributes:
        qualname: The replaced function's dotted name (``Class.method`` or ``function``).
        original: The file's bytes before.
        patched: The file's bytes after.
        old_code: The replaced function as it was (decorators included).
        new_code: The function as it is now.
        start_line: First line of the replaced span in the original (1-based).
        end_line: Last line of the replaced span in the original.
    """

    qualname: str
    original: bytes
    patched: bytes
    old_code: str
    new_code: str
    start_line: int
    end_line: int


def _functions(body: Sequence[cst.CSTNode], prefix: str = "") -> list[tuple[str, cst.FunctionDef]]:
    """Module-level functions and the methods of classes (nested classes too), in order.

    Functions defined inside other functions are not listed: they have no stable name.
    """
    found: list[tuple[str, cst.FunctionDef]] = []
    for stmt in body:
        if isinstance(stmt, cst.FunctionDef):
            found.append((prefix + stmt.name.value, stmt))
        elif isinstance(stmt, cst.ClassDef) and isinstance(stmt.body, cst.IndentedBlock):
            found += _functions(stmt.body.body, f"{prefix}{stmt.name.value}.")
    return found


def _parse(source: bytes, what: str) -> cst.Module:
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        raise CodePatchError(
            f"{what} does not parse as Python ({exc.message} at line {exc.raw_line}, "
            f"column {exc.raw_column}); fix it first."
        ) from None


def list_functions(source: bytes) -> list[str]:
    """Dotted names of the functions and methods that :func:`replace_function` can target."""
    return [name for name, _ in _functions(_parse(source, "the file").body)]


def _line_starts(text: str) -> list[int]:
    """Offset of the first character of each line (lines end at ``\\r\\n``, ``\\r`` or ``\\n``)."""
    return [0, *(m.end() for m in re.finditer(r"\r\n|\r|\n", text))]


def _find_function(
    module: cst.Module, function_name: str, filename: str
) -> tuple[str, cst.FunctionDef]:
    """The one function of ``module`` called ``function_name`` (``name`` or ``Class.method``).

    Raises:
        CodePatchError: The name matches no function or several.
    """
    candidates = _functions(module.body)
    wanted = function_name.strip()
    if "." in wanted:
        matches = [(q, n) for q, n in candidates if q == wanted]
    else:
        matches = [(q, n) for q, n in candidates if q.rsplit(".", 1)[-1] == wanted]
    if not matches:
        known = ", ".join(q for q, _ in candidates) or "none"
        raise CodePatchError(
            f"{filename} has no function {function_name!r}; functions found: {known}."
        )
    if len(matches) > 1:
        names = ", ".join(q for q, _ in matches)
        raise CodePatchError(
            f"{filename}: {function_name!r} matches {len(matches)} definitions ({names}); "
            "name one as Class.method, or rename the duplicates."
        )
    return matches[0]


def _new_function(new_code: str, target: cst.FunctionDef) -> cst.FunctionDef:
    """``new_code`` parsed as one function named as ``target``, with ``target``'s leading lines.

    Raises:
        CodePatchError: Not exactly one function, comments outside it, or another name.
    """
    new_text = textwrap.dedent(new_code).strip("\n") + "\n"
    new_module = _parse(new_text.encode("utf-8"), "the new code")
    stray = [
        line.comment.value
        for line in (*new_module.header, *new_module.footer)
        if line.comment is not None
    ]
    if len(new_module.body) != 1 or not isinstance(new_module.body[0], cst.FunctionDef):
        raise CodePatchError(
            "the new code must be exactly one function definition (decorators allowed), "
            f"but it holds {len(new_module.body)} statement(s)."
        )
    if stray:
        raise CodePatchError(
            f"the new code has comments outside the function ({stray[0]!r}); move them inside "
            "the function body so that they are not lost."
        )
    new_fn = new_module.body[0]
    if new_fn.name.value != target.name.value:
        raise CodePatchError(
            f"the new code defines {new_fn.name.value!r}, not {target.name.value!r}; a code "
            "improvement replaces a function under its own name."
        )
    return new_fn.with_changes(leading_lines=target.leading_lines)


def _swap(module: cst.Module, target: cst.FunctionDef, replacement: cst.FunctionDef) -> cst.Module:
    """``module`` with ``target`` replaced by ``replacement`` (a new module; ``module`` is kept)."""

    class _Swap(cst.CSTTransformer):
        def leave_FunctionDef(
            self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
        ) -> cst.FunctionDef:
            return replacement if original_node is target else updated_node

    return module.visit(_Swap())


def _check_outside_unchanged(
    module: cst.Module, patched: cst.Module, target: cst.FunctionDef, qualname: str, filename: str
) -> CodeRange:
    """Verify, do not trust: everything outside the function's whitespace-inclusive span must
    be byte-identical (compared on the decoded text, whose encoding round-trips).

    Returns:
        The function's span in the original.

    Raises:
        CodePatchError: Text outside the function changed.
    """
    positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(
        WhitespaceInclusivePositionProvider
    )
    span = positions[target]
    old_text, new_full = module.code, patched.code
    starts = _line_starts(old_text)
    begin = starts[span.start.line - 1] + span.start.column
    end = (
        starts[span.end.line - 1] + span.end.column
        if span.end.line <= len(starts)
        else len(old_text)
    )
    tail = len(old_text) - end
    if new_full[:begin] != old_text[:begin] or new_full[len(new_full) - tail :] != old_text[end:]:
        raise CodePatchError(
            f"{filename}: replacing {qualname} would change text outside the function; "
            "nothing was written (please report this with the file)."
        )
    return span


def replace_function(
    source: bytes, function_name: str, new_code: str, *, filename: str = "<source>"
) -> FunctionPatch:
    """Replace one function (or method) of ``source`` with ``new_code``.

    The function's leading blank lines and comments are kept; its decorators, signature and
    body become those of ``new_code``. Every byte outside the function's span is unchanged,
    and that is verified, as is that the result compiles.

    Args:
        source: The file's bytes (any encoding libcst detects: a coding cookie or UTF-8).
        function_name: ``name`` (must be unique in the file) or ``Class.method``.
        new_code: One function definition (decorators allowed), at any indentation.
        filename: Shown in messages and compile errors.

    Returns:
        The patch: bytes before and after and the two versions of the function.

    Raises:
        CodePatchError: The file or the new code does not parse, the new code is not exactly
            one function of the same name, the name matches no function or several, or the
            result would change bytes outside the function or not compile.
    """
    module = _parse(source, filename)
    if module.bytes != source:
        raise CodePatchError(
            f"{filename}: libcst does not reproduce this file byte for byte (unusual encoding "
            "or line endings), so a patch could not guarantee the rest stays identical."
        )
    qualname, target = _find_function(module, function_name, filename)
    replacement = _new_function(new_code, target)
    patched_module = _swap(module, target, replacement)
    patched = patched_module.bytes
    span = _check_outside_unchanged(module, patched_module, target, qualname, filename)
    try:
        compile(patched, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        raise CodePatchError(f"{filename}: the patched file does not compile ({exc}).") from None
    return FunctionPatch(
        qualname=qualname,
        original=source,
        patched=patched,
        old_code=module.code_for_node(target.with_changes(leading_lines=())),
        new_code=patched_module.code_for_node(replacement),
        start_line=span.start.line,
        end_line=span.end.line,
    )


# ---------------------------------------------------------------------- check commands
def parse_command(command: str | Sequence[str] | None) -> list[str]:
    """A command as an argument list (a string is split like a POSIX shell would, no shell).

    Raises:
        ConfigError: An unbalanced quote, or an empty command.
    """
    if command is None:
        return []
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise ConfigError(f"cannot split check command {command!r}: {exc}.") from None
    else:
        argv = [str(a) for a in command]
    if not argv:
        raise ConfigError("the check command is empty; pass e.g. 'python -m pytest -q' or None.")
    return argv


def has_tests(root: Path) -> bool:
    """Whether ``root`` holds tests pytest would find: a ``tests/`` folder, or ``test_*.py`` /
    ``*_test.py`` files in the root itself (only the top level is looked at: a root may be a
    large tree, and this runs at every proposal and approval)."""
    if (root / "tests").is_dir():
        return True
    try:
        return any(
            entry.is_file()
            and entry.name.endswith(".py")
            and (entry.name.startswith("test_") or entry.name.endswith("_test.py"))
            for entry in root.iterdir()
        )
    except OSError:
        return False


#: pytest's arguments as the default check: quiet, and no ``.pytest_cache`` left in the root.
PYTEST_ARGS = ("-m", "pytest", "-q", "-p", "no:cacheprovider")


def default_check(root: Path) -> list[str]:
    """The check command used where none is configured: ``python -m pytest -q`` (this
    interpreter, without the cache plugin so nothing is written into the root) when ``root`` has
    tests and this interpreter can import pytest; otherwise none (``[]``)."""
    if not has_tests(root):
        return []
    if importlib.util.find_spec("pytest") is None:
        logger.warning(
            "%s has tests, but pytest is not installed for %s: no check runs (install pytest "
            "or configure a check command)",
            root,
            sys.executable,
        )
        return []
    return [sys.executable, *PYTEST_ARGS]


def _runs_pytest(argv: Sequence[str]) -> bool:
    """Whether ``argv`` is pytest (``pytest ...``, ``py.test ...`` or ``python -m pytest ...``)."""
    if not argv:
        return False
    if Path(argv[0]).name in ("pytest", "py.test"):
        return True
    return list(argv[1:3]) == ["-m", "pytest"]


#: One count of pytest's summary line ("3 passed", "1 error", "2 warnings").
_COUNT = re.compile(r"(\d+) ([a-z]+)")
#: pytest's summary line: counts, then "in 0.12s" (with -q bare; without, between "=" signs).
_SUMMARY = re.compile(r"^=*\s*(?:(?:\d+ [a-z]+, )*\d+ [a-z]+|no tests ran) in [\d.]+s\b")
#: pytest writes these in the singular for one; counted under the plural.
_PLURAL = {"error": "errors", "warning": "warnings"}


def pytest_counts(output: str) -> dict[str, int] | None:
    """The counts of pytest's last summary line (``{"passed": 3, "failed": 1}``; ``{}`` for
    "no tests ran"), or ``None`` when the output has no such line (pytest did not get that far).
    ``error`` and ``warning`` are counted as ``errors`` and ``warnings``."""
    for line in reversed(output.splitlines()):
        found = _SUMMARY.match(line.strip())
        if found is None:
            continue
        counts: dict[str, int] = {}
        for number, what in _COUNT.findall(found.group(0)):
            key = _PLURAL.get(what, what)
            counts[key] = counts.get(key, 0) + int(number)
        return counts
    return None


@dataclass(frozen=True)
class CommandResult:
    """What one run of a check command did.

    Attributes:
        argv: The command.
        returncode: Its exit status (``None`` when it was killed for running too long).
        passed: Exit status 0 within the time limit.
        timed_out: Killed at the time limit.
        duration_s: Wall-clock seconds.
        value: The number on its last non-empty line of standard output, if there is one (a
            benchmark prints its timing there).
        output_tail: The end of its standard output and error.
        tests: For pytest, the counts of its summary line (``{"passed": 3, "failed": 1}``);
            ``None`` for another command or when pytest printed no summary.
    """

    argv: tuple[str, ...]
    returncode: int | None
    passed: bool
    timed_out: bool
    duration_s: float
    value: float | None
    output_tail: str
    tests: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for the ledger)."""
        return {
            "argv": list(self.argv),
            "returncode": self.returncode,
            "passed": self.passed,
            "timed_out": self.timed_out,
            "duration_s": self.duration_s,
            "value": self.value,
            "output_tail": self.output_tail,
            "tests": self.tests,
        }


def _last_number(stdout: str) -> float | None:
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        return float(lines[-1])
    except ValueError:
        return None


def run_command(argv: Sequence[str], cwd: Path, *, timeout_s: float = 300.0) -> CommandResult:
    """Run a check command in ``cwd`` and report whether it passed.

    It runs without a shell, in a new process group (killed as a whole at the time limit), with
    ``PYTHONPYCACHEPREFIX`` pointing at a fresh folder: Python's bytecode cache keys on a
    source file's size and mtime in whole seconds, so a patch and its rollback within one
    second could otherwise run stale bytecode.

    Args:
        argv: The command and its arguments.
        cwd: Working folder (the root of the project being changed).
        timeout_s: Seconds before the command is killed and counted as failed.

    Returns:
        The result (a failing or timed-out command is a result, not an error).

    Raises:
        ConfigError: The command cannot be started (not found, not executable).
    """
    if not argv:
        raise ConfigError("no check command to run.")
    with tempfile.TemporaryDirectory(prefix="selfimprove-pycache-") as cache:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": cache, "PYTHONDONTWRITEBYTECODE": "1"}
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot run check command {shlex.join(argv)!r} ({exc.strerror or exc}); "
                "check that the program exists and is executable."
            ) from None
        timed_out = False
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        duration = time.perf_counter() - t0
    output = (stdout or "") + (stderr or "")
    returncode = None if timed_out else proc.returncode
    result = CommandResult(
        argv=tuple(argv),
        returncode=returncode,
        passed=returncode == 0,
        timed_out=timed_out,
        duration_s=duration,
        value=_last_number(stdout or ""),
        output_tail=output[-OUTPUT_TAIL_CHARS:],
        tests=pytest_counts(stdout or "") if _runs_pytest(argv) else None,
    )
    logger.info(
        "check %s: %s in %.2f s",
        shlex.join(argv),
        "passed" if result.passed else ("timed out" if timed_out else f"exit {returncode}"),
        duration,
    )
    return result
