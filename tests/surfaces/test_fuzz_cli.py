"""Every command of the CLI fuzzed with Hypothesis: no traceback, every refusal is one line
``error: …`` on stderr with exit code 2, and a refused call changes nothing in the home.

The bulk runs the typer app in process (``CliRunner``: a subprocess per call would spend
seconds importing torch); a handful of real subprocesses check the same contract as a user
sees it. Commands that write get inputs with at least one bad part, so they must refuse;
commands that read may also succeed. Hypothesis is derandomized: the same inputs every run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import typer.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from selfimprove.strategies import STRATEGIES
from selfimprove.surfaces.cli.app import app
from tests.surfaces._fuzz import (
    ADVERSARIAL,
    MODEL,
    OBJECTIVES,
    bad_params,
    make_home,
    model_names,
    number_texts,
    snapshot,
    texts,
)

ROOT = Path(__file__).resolve().parents[2]
RUNNER = CliRunner()


def fuzz(examples: int) -> Any:
    """Hypothesis settings of one fuzz test: ``examples`` inputs, the same ones every run."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@dataclasses.dataclass
class World:
    """The fuzz's fixed home, the folder it runs in, and a file where a folder should be."""

    home: Path
    work: Path
    blocker: Path
    calls: int = 0
    last: str = ""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("fuzz_cli")
    work = root / "work"
    work.mkdir()
    blocker = root / "a-file"
    blocker.write_text("x")
    with pytest.MonkeyPatch.context() as mp:
        # The click command tree is built once, not on every call (70 % of a call's time);
        # click commands are made to be invoked again and again.
        mp.setattr(typer.testing, "_get_command", functools.cache(typer.main.get_command))
        for var in ("SELFIMPROVE_HOME", "SELFIMPROVE_DB", "SELFIMPROVE_CRASH_AT"):
            mp.delenv(var, raising=False)
        mp.setenv("COLUMNS", "200")
        mp.chdir(work)  # files the fuzz writes (export --out, a dashboard) land here
        yield World(make_home(root / "home"), work, blocker)


def run(world: World, args: list[str], *, must_refuse: bool) -> Result:
    """Invoke the CLI with ``args`` and hold it to the contract (see the module docstring)."""
    before = world.last or snapshot(world.home)
    result = RUNNER.invoke(app, args, catch_exceptions=True)
    world.calls += 1
    world.last = after = snapshot(world.home)
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit), (args, repr(exc), result.exc_info)
    assert "Traceback" not in result.output, (args, result.output)
    if result.exit_code == 2:
        lines = [line for line in result.stderr.split("\n") if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
        assert after == before, f"{args} was refused but changed the home"
    elif must_refuse:
        pytest.fail(f"{args} was not refused: exit {result.exit_code}\n{result.output}")
    else:
        assert result.exit_code == 0, (args, result.exit_code, result.output)
    assert not list(world.work.rglob("selfimprove.db")), f"{args} created a home"
    return result


# ---------------------------------------------------------------------- values
def cli_text(value: Any) -> str:
    """A value as a user types it (JSON for lists, dicts, bools and non-finite floats)."""
    return value if isinstance(value, str) else json.dumps(value)


def homes(world: World, *, missing: bool) -> st.SearchStrategy[list[str]]:
    """``--home`` options: the fixed home, or values no command may use; with ``missing``
    also folders that do not exist (for commands that must not create one)."""
    bad = [
        "",
        " ",
        "x" * 300,
        f"{world.work}/{'y' * 300}/z",
        str(world.blocker),
        str(world.blocker / "sub"),
        "a\x00b",
        "/dev/null",
    ]
    options = [st.just(str(world.home)), st.sampled_from(bad)]
    if missing:
        options.append(texts)
    return st.one_of(*options).map(lambda h: ["--home", h])


def not_int(text: str) -> bool:
    return not any(c.isdigit() for c in text) and text.strip().lower() not in (
        "nan",
        "inf",
        "-inf",
        "infinity",
    )


non_integers = texts.filter(not_int)
out_paths = st.one_of(
    st.from_regex(r"[a-z]{1,8}\.(json|csv|html)", fullmatch=True),
    st.sampled_from(["", ".", "/", "no/such/dir/x.html", "x" * 300, "a\x00b"]),
)


def options(spec: dict[str, st.SearchStrategy[str] | None]) -> st.SearchStrategy[list[str]]:
    """A random subset of a command's options, each with a value drawn from ``spec``."""

    @st.composite
    def draw_options(draw: st.DrawFn) -> list[str]:
        args: list[str] = []
        for name in draw(st.lists(st.sampled_from(sorted(spec)), max_size=3, unique=True)):
            values = spec[name]
            args += [name] if values is None else [name, draw(values)]
        return args

    return draw_options()


# ---------------------------------------------------------------------- commands that read
READS: dict[tuple[str, ...], dict[str, st.SearchStrategy[str] | None]] = {
    ("status",): {"--json": None},
    ("models",): {"--json": None},
    ("history",): {"--limit": number_texts, "--json": None},
    ("export",): {
        "--format": st.one_of(st.sampled_from(["json", "csv"]), texts),
        "--table": st.one_of(st.sampled_from(["experiments", "measurements"]), texts),
        "--out": out_paths,
    },
    ("dashboard",): {"--out": out_paths},
    ("engine", "capabilities"): {"--json": None},
    ("engine", "weaknesses"): {"--min-impact": number_texts, "--all": None, "--json": None},
    ("engine", "experiments"): {
        "--weakness": number_texts,
        "--limit": number_texts,
        "--json": None,
    },
    ("engine", "improvements"): {"--status": texts, "--json": None},
    ("engine", "assess"): {"--json": None},
}
#: The dashboard renders a 4 MiB page: drawn once in twenty.
READ_COMMANDS = [c for c in READS if c != ("dashboard",)] * 2 + [("dashboard",)]


def test_commands_that_read(world: World) -> None:
    @fuzz(260)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        command = data.draw(st.sampled_from(READ_COMMANDS))
        args = [*command]
        if command == ("history",) and data.draw(st.booleans()):
            args.append(data.draw(st.one_of(model_names(valid=True), texts)))
        args += data.draw(options(READS[command]))
        # ``engine improvements`` still creates a missing home (left to its owner).
        args += data.draw(homes(world, missing=command != ("engine", "improvements")))
        if data.draw(st.integers(0, 9)) == 0:
            args.append(data.draw(st.sampled_from(["--nope", "--home", "-x", "extra"])))
        run(world, args, must_refuse=False)

    calls = world.calls
    check()
    assert world.calls - calls >= 260 * 0.9  # Hypothesis ran (nearly) every example


def test_improve_with_one_bad_part(world: World) -> None:
    @fuzz(180)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        poison = data.draw(
            st.sampled_from(["model", "strategy", "params", "objective", "budget", "home"])
        )
        strategy = data.draw(
            texts.filter(lambda s: s not in STRATEGIES)
            if poison == "strategy"
            else st.sampled_from(sorted(STRATEGIES))
        )
        args = ["improve", data.draw(model_names(valid=poison != "model")), "-s", strategy]
        if poison == "params":
            for key, value in data.draw(bad_params(strategy)).items():
                args += ["-p", f"{key}={cli_text(value)}"]
        if poison == "objective":
            args += ["--objective", data.draw(texts.filter(lambda s: s not in OBJECTIVES))]
        if poison == "budget":
            option, values = data.draw(
                st.sampled_from(
                    [
                        ("--budget-epochs", st.integers(max_value=0).map(str)),
                        ("--budget-epochs", st.integers(min_value=100_001).map(str)),
                        ("--budget-epochs", non_integers),
                        ("--budget-seconds", st.floats(max_value=0.0999).map(repr)),
                        ("--budget-seconds", st.floats(min_value=604_800.1).map(repr)),
                        ("--budget-seconds", non_integers),
                        ("--seed", non_integers),
                    ]
                )
            )
            args += [option, data.draw(values)]
        if poison == "home":
            bad = [h for h in data.draw(homes(world, missing=True)) if h != str(world.home)]
            args += bad if len(bad) == 2 else ["--home", "no-such-home"]
        else:
            args += ["--home", str(world.home)]
        args += data.draw(options({"--json": None}))
        run(world, args, must_refuse=True)

    calls = world.calls
    check()
    assert world.calls - calls >= 180 * 0.9  # Hypothesis ran (nearly) every example


def test_commands_that_write_refuse_bad_input(world: World) -> None:
    """``run``, ``rollback``, the engine's code decisions, ``serve``, ``mcp`` and plasticity,
    each with a part that must be refused (this home has nothing to roll back or approve)."""

    run_poisons = {
        "-m": texts.filter(lambda s: s != MODEL),
        "--cycles": st.one_of(st.sampled_from(["0", "10001"]), non_integers),
        "--epochs": st.one_of(st.sampled_from(["0", "100001"]), non_integers),
        "--concurrent": st.sampled_from(["0", "65", "-3", "x"]),
        "--seed": non_integers,
    }

    def run_args(data: st.DataObject) -> list[str]:
        option = data.draw(st.sampled_from(sorted(run_poisons)))
        poison = [option, data.draw(run_poisons[option])]
        return ["run", "--cycles", "1", *poison, *data.draw(homes(world, missing=False))]

    def rollback_args(data: st.DataObject) -> list[str]:
        model = data.draw(st.one_of(model_names(valid=True), texts))
        extra = data.draw(options({"--to": number_texts}))
        return ["rollback", model, *extra, *data.draw(homes(world, missing=True))]

    def engine_decision_args(data: st.DataObject) -> list[str]:
        command = data.draw(st.sampled_from(["approve", "reject", "rollback"]))
        spec: dict[str, st.SearchStrategy[str] | None] = {
            "--actor": texts,
            "--json": None,
            **({"--reason": texts} if command != "approve" else {}),
            **({"--root": texts} if command != "reject" else {}),
            **({"--timeout": number_texts} if command == "approve" else {}),
        }
        ident = data.draw(number_texts)
        extra = data.draw(options(spec))
        # Not a missing home: these commands still create one there (left to their owner).
        return ["engine", command, ident, *extra, *data.draw(homes(world, missing=False))]

    def serve_args(data: st.DataObject) -> list[str]:
        bad_port = st.one_of(st.sampled_from(["0", "65536", "-1", "99999999999"]), non_integers)
        if data.draw(st.booleans()):
            tail = ["--port", data.draw(bad_port), *data.draw(homes(world, missing=True))]
        else:  # a valid port: the home must be bad or missing
            home = data.draw(homes(world, missing=True).filter(lambda h: h[1] != str(world.home)))
            tail = ["--port", "8765", *home]
        return ["serve", *data.draw(options({"--host": texts})), *tail]

    def mcp_args(data: st.DataObject) -> list[str]:
        transport = texts.filter(lambda s: s not in ("stdio", "streamable-http"))
        poison = data.draw(
            st.sampled_from(
                [
                    ["--transport", data.draw(transport)],
                    ["--port", data.draw(st.sampled_from(["0", "70000", "x", ""]))],
                    ["--seed", data.draw(non_integers)],
                ]
            )
        )
        extra = data.draw(options({"--host": texts, "--read-only": None}))
        return ["mcp", *extra, *poison, *data.draw(homes(world, missing=False))]

    def plasticity_args(data: st.DataObject) -> list[str]:
        command = data.draw(st.sampled_from(["run", "test", "visualize"]))
        if command == "visualize":
            spec = {"--dashboard": None, "--output": out_paths, "--json": None}
            results = data.draw(st.one_of(texts, st.just(".")))
            return ["plasticity", "visualize", "--results_dir", results, *data.draw(options(spec))]
        bad = [
            ["--cycles", data.draw(st.sampled_from(["0", "1001", "x", ""]))],
            ["--seed", data.draw(non_integers)],
            ["--home", ""],
            [data.draw(st.sampled_from(["--nope", "--model", "-x"]))],
        ]
        if command == "run":
            bad += [
                ["--steps", data.draw(st.sampled_from(["-1", "1000001", "x"]))],
                ["--context", data.draw(st.sampled_from(["7", "65537", "x"]))],
            ]
        return ["plasticity", command, *data.draw(st.sampled_from(bad))]

    makers = [run_args, rollback_args, engine_decision_args, serve_args, mcp_args]
    makers += [plasticity_args]

    @fuzz(240)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        make = data.draw(st.sampled_from(makers))
        run(world, make(data), must_refuse=True)

    calls = world.calls
    check()
    assert world.calls - calls >= 240 * 0.9  # Hypothesis ran (nearly) every example


def test_random_argument_lists(world: World) -> None:
    """Words in any order (no command that would run, serve or write comes first): the parser
    and the commands must refuse what they cannot use, in one line, and create nothing."""
    words = st.one_of(
        st.sampled_from(
            [
                *("status", "models", "history", "export", "engine", "rollback", "--home"),
                *("--json", "--limit", "--to", "-p", "-s", "--format", "-v", "capabilities"),
            ]
        ),
        st.sampled_from(ADVERSARIAL),
        texts,
    )
    writers = ("run", "improve", "serve", "mcp", "plasticity", "engine")
    first = words.filter(lambda w: w not in writers)

    @fuzz(120)
    @given(first=first, rest=st.lists(words, max_size=6))
    def check(first: str, rest: list[str]) -> None:
        args = [first, *rest]
        if "--out" in args or "-o" in args:
            return  # an output path drawn from any text could land anywhere
        run(world, args, must_refuse=False)

    calls = world.calls
    check()
    assert world.calls - calls >= 120 * 0.9  # Hypothesis ran (nearly) every example


# ---------------------------------------------------------------------- real processes
REAL_CALLS = (
    (["status", "--home", "{missing}"], "no selfimprove home at"),
    (["improve", MODEL, "-p", "lr=nan", "--home", "{home}"], "lr='nan' is not a finite"),
    (["models", "--home", ""], "the path is empty"),
)


def test_real_processes_refuse_in_one_line_with_exit_code_2(world: World) -> None:
    """The contract as a user sees it: ``selfimprove`` processes (started together: each
    spends its seconds importing torch), exit code 2, one line, nothing changed or created."""
    missing = world.work / "missing-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFIMPROVE_")}
    before = snapshot(world.home)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", "from selfimprove.surfaces.cli.app import main; main()"]
            + [a.format(home=world.home, missing=missing) for a in args],
            env={**env, "COLUMNS": "200", "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args, _ in REAL_CALLS
    ]
    for proc, (args, needle) in zip(procs, REAL_CALLS, strict=True):
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 2, (args, stdout, stderr)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, stderr)
        assert needle in lines[0] and "Traceback" not in stdout + stderr, (args, stderr)
    assert snapshot(world.home) == before and not missing.exists()
