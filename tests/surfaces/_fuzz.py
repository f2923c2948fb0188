"""What the CLI and MCP fuzz tests share: a tiny home, its snapshot, and hostile values.

The home holds one small registered model (``wine``, a 13-16-3 MLP of ``tests._tasks:wine``)
and nothing else, so no request the fuzz makes can succeed by accident where it writes: there
is no version to roll back to, no code improvement to approve, and every ``improve`` the fuzz
builds carries at least one bad part. The snapshot is the database's SQL dump plus every file
of the home, hashed, taken before and after each refused call.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from pathlib import Path
from typing import Any

import torch
from hypothesis import strategies as st

from selfimprove.loop.improver import SelfImprover
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.strategies import STRATEGIES, Param
from selfimprove.tasks import resolve_task

MODEL = "wine"
TASK_REF = "tests._tasks:wine"
#: The objectives of the wine task: an ``--objective`` outside them is refused.
OBJECTIVES = ("accuracy", "latency_ms", "size_bytes", "parameters", "loss")


def make_home(home: Path) -> Path:
    """A home with ``wine`` v1 (one epoch trained) and nothing else."""
    task = resolve_task(TASK_REF)
    torch.manual_seed(0)
    module = task.build({"width": 16, "depth": 1})
    train_(module, task, TrainConfig(epochs=1, lr=1e-3, seed=0))
    with SelfImprover(home) as si:
        si.register_model(MODEL, TASK_REF, module, {"width": 16, "depth": 1})
    return home


def snapshot(home: Path) -> str:
    """A hash of everything the home holds: the database's rows and schema (its SQL dump,
    read-only) and every other file's path and bytes."""
    digest = hashlib.sha256()
    con = sqlite3.connect(f"file:{home / 'selfimprove.db'}?mode=ro", uri=True)
    try:
        for line in con.iterdump():
            digest.update(line.encode())
    finally:
        con.close()
    for path in sorted(home.rglob("*")):
        if path.name.startswith("selfimprove.db"):  # the database, its -wal and -shm files
            continue
        digest.update(str(path.relative_to(home)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------- hostile values
#: Strings people and programs get wrong: empty, blank, numbers that are not, markup, control
#: characters, path tricks, and things far too long.
ADVERSARIAL = (
    "",
    " ",
    "-",
    "--",
    "=",
    "0",
    "-1",
    "1e309",
    "-1e309",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "null",
    "None",
    "true",
    "[]",
    "{}",
    '{"a": NaN}',
    "9" * 400,
    "x" * 5000,
    "[/x]",
    "[bold red]x",
    "%s%n",
    "{0}",
    "'",
    '"',
    "\\",
    "a\nb",
    "a\rb",
    "\x00",
    "a\x00b",
    "\x1b[31m",
    "../..",
    "~",
    "a?b#c%20",
    "é∂ß漢字🙂",
    "\u202e",
)

#: Any text, adversarial text above all.
texts = st.one_of(
    st.sampled_from(ADVERSARIAL),
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="ascii"), max_size=12),
)

#: Numbers as typed: integers far past 32 and 64 bits, floats with NaN and infinities, and
#: text that is not a number.
number_texts = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.sampled_from([0, -1, 1, 2**31, 2**31 - 1, 2**63, 10**30]).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    texts,
)


def model_names(*, valid: bool) -> st.SearchStrategy[str]:
    """``wine`` when ``valid``, else a name no model has."""
    if valid:
        return st.just(MODEL)
    return texts.filter(lambda s: s != MODEL)


def bad_value(param: Param) -> st.SearchStrategy[Any]:
    """A value ``param`` must refuse (its declaration is the contract the fuzz holds it to):
    the wrong kind, NaN and infinities, and numbers just past either end."""
    wrong_kind: list[Any] = [True, [], {}, "abc", "", "nan", "inf", "1e309"]
    if param.kind in ("int", "float"):
        edges: list[Any] = [math.nan, math.inf, -math.inf]
        if param.low is not None:
            edges += [param.low - 1, -(10**30)] + ([param.low] if param.low_open else [])
        if param.high is not None:
            edges += [param.high + 1, 10**30] + ([param.high] if param.high_open else [])
        if param.kind == "int":
            edges += [1.5, "2.5"]
        return st.sampled_from(wrong_kind + edges + [str(e) for e in edges])
    if param.kind == "bool":
        return st.sampled_from([*wrong_kind[1:], 2, "maybe", "tru"])
    if param.kind == "choice":
        others = texts.filter(lambda s: s.strip() not in param.choices)
        return st.one_of(st.sampled_from([*wrong_kind, 1]), others)
    if param.kind == "choices":
        return st.sampled_from([[], "", ",", "nope", ["nope"], [param.choices[0]] * 2, "[1]", 3])
    return st.sampled_from(["[1]", "nope", "{", '{"a": NaN}', 3, [1], '{"a": Infinity}'])


def bad_params(strategy: str, *, over_json: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """Settings for ``strategy`` with at least one bad entry (an unknown key or a bad value).

    ``over_json``: NaN and infinities as text (``"nan"``): JSON has no such numbers, and the MCP
    client sends them as ``null``, which is a valid value of a nullable setting.
    """
    table = STRATEGIES[strategy].PARAMS if strategy in STRATEGIES else {}
    unknown = texts.filter(lambda k: k.strip() not in table and "=" not in k and k.strip() != "")
    unknown_key = st.tuples(unknown, st.one_of(number_texts, texts))
    if not table:
        return unknown_key.map(lambda kv: {kv[0]: kv[1]})
    known_key = st.sampled_from(sorted(table)).flatmap(
        lambda k: st.tuples(st.just(k), bad_value(table[k]))
    )
    poison = st.one_of(unknown_key, known_key)
    return poison.map(lambda kv: {kv[0]: _over_json(kv[1]) if over_json else kv[1]})


def _over_json(value: Any) -> Any:
    return repr(value) if isinstance(value, float) and not math.isfinite(value) else value
