"""Every MCP tool fuzzed with Hypothesis through the official SDK's client: no traceback on the
server, every refusal an error result that carries its reason, and a refused call changes
nothing in the home.

One server (every tool, code approval included) and one client session serve the whole
module, on an event loop in a thread of its own; each example is one ``call_tool``. Tools that
write get arguments with at least one bad part, so they must refuse; tools that read may also
succeed. Hypothesis is derandomized: the same inputs every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfimprove.brain.planning import KINDS
from selfimprove.config import SelfImprovementConfig
from selfimprove.strategies import STRATEGIES
from selfimprove.surfaces.integration import SelfImprovementIntegration
from selfimprove.surfaces.mcp_server import build_server
from tests.surfaces._fuzz import MODEL, bad_params, make_home, model_names, snapshot, texts

CFG = SelfImprovementConfig(auto_start=False, train_epochs=5, train_seconds=10.0)
#: Tools that change state: every call the fuzz makes to them must be refused.
WRITERS = {
    "add_custom_improvement_task",
    "optimize_specific_model",
    "rollback_model",
    "approve_code_improvement",
    "reject_code_improvement",
    "rollback_code_improvement",
}


def fuzz(examples: int) -> Any:
    """Hypothesis settings of one fuzz test: ``examples`` inputs, the same ones every run."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class _Tracebacks(logging.Handler):
    """Collects every log record that carries an exception (the server logs a tool's
    unexpected exception with its traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@dataclasses.dataclass
class Session:
    """A live client session on a thread's event loop, and the fuzz's home."""

    home: Path
    loop: asyncio.AbstractEventLoop
    client: Any
    tracebacks: _Tracebacks
    calls: int = 0
    last: str = ""

    def call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=120)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    from mcp import Client

    home = make_home(tmp_path_factory.mktemp("fuzz_mcp") / "home")
    integration = SelfImprovementIntegration(config=CFG, home=home)
    server = build_server(integration, allow_code_approval=True)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    ready: Future[Any] = Future()
    stop = asyncio.Event()

    async def hold() -> None:  # the session lives (and ends) in this one task
        try:
            async with Client(server) as client:
                ready.set_result(client)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    held = asyncio.run_coroutine_threadsafe(hold(), loop)
    tracebacks = _Tracebacks()
    logging.getLogger().addHandler(tracebacks)
    try:
        yield Session(home, loop, ready.result(timeout=120), tracebacks)
    finally:
        logging.getLogger().removeHandler(tracebacks)
        loop.call_soon_threadsafe(stop.set)
        with contextlib.suppress(Exception):
            held.result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def text_of(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def call(session: Session, tool: str, args: dict[str, Any], *, must_refuse: bool) -> Any:
    """Call ``tool`` with ``args`` and hold it to the contract (see the module docstring)."""
    before = session.last or snapshot(session.home)
    result = session.call(session.client.call_tool(tool, args))
    session.calls += 1
    session.last = after = snapshot(session.home)
    found = [
        (r.getMessage(), r.exc_info[1] if r.exc_info else None) for r in session.tracebacks.records
    ]
    session.tracebacks.records.clear()
    assert not found, (tool, args, found)
    if result.is_error:
        reason = text_of(result)
        assert reason.strip(), (tool, args)
        # An unexpected exception comes back as the bare "Error executing tool X": no reason.
        assert reason.strip() != f"Error executing tool {tool}", (tool, args)
        assert after == before, f"{tool}({args}) was refused but changed the home"
    elif must_refuse:
        pytest.fail(f"{tool}({args}) was not refused: {text_of(result)[:500]}")
    return result


# ---------------------------------------------------------------------- values
#: JSON values of any shape, for arguments of any declared type.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)


def maybe(name: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``{name: value}`` or nothing (the tool's default)."""
    return st.one_of(st.just({}), values.map(lambda v: {name: v}))


def merged(*parts: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(*parts).map(lambda ds: {k: v for d in ds for k, v in d.items()})


#: Anything where an argument should be: its own type with bad values, or another type.
anything = st.one_of(json_values, texts)

READS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "get_improvement_status": st.just({}),
    "get_system_health_report": st.just({}),
    "list_models": st.just({}),
    "list_capabilities": st.just({}),
    "get_self_assessment": st.just({}),
    "list_code_improvements": st.just({}),
    "get_improvement_history": maybe(
        "limit", st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([0, 1, 1000, 1001]))
    ),
    "get_model_performance": merged(maybe("model_id", st.one_of(st.just(MODEL), texts))),
    "export_improvement_data": maybe("format", st.one_of(st.sampled_from(["json", "csv"]), texts)),
    "list_weaknesses": maybe("include_closed", anything),
}


def test_tools_that_read(session: Session) -> None:
    @fuzz(200)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        tool = data.draw(st.sampled_from(sorted(READS)))
        args = data.draw(READS[tool])
        if data.draw(st.integers(0, 4)) == 0:  # an argument of the wrong type or unknown
            args[data.draw(st.sampled_from([*args, "nope"]))] = data.draw(anything)
        call(session, tool, args, must_refuse=False)

    calls = session.calls
    check()
    assert session.calls - calls >= 200 * 0.9  # Hypothesis ran (nearly) every example


@st.composite
def optimize_args(draw: st.DrawFn) -> dict[str, Any]:
    """``optimize_specific_model`` with one bad part: model, strategy, or settings."""
    poison = draw(st.sampled_from(["model", "strategy", "params", "auto_params", "types"]))
    model = draw(model_names(valid=poison != "model"))
    if poison == "strategy":
        strategy = draw(texts.filter(lambda s: s not in STRATEGIES and s != "auto"))
    elif poison == "auto_params":
        strategy = "auto"
    else:
        strategy = draw(st.sampled_from(sorted(STRATEGIES)))
    args: dict[str, Any] = {"model_id": model, "strategy": strategy}
    if poison in ("params", "auto_params"):
        name = strategy if strategy in STRATEGIES else "train"
        args["params"] = draw(bad_params(name, over_json=True))
    if poison == "types":  # a value of the wrong JSON type for one argument
        key = draw(st.sampled_from(["model_id", "strategy", "params"]))
        args[key] = draw(st.one_of(st.integers(), st.floats(), st.lists(st.integers())))
    return args


@st.composite
def task_args(draw: st.DrawFn) -> dict[str, Any]:
    """``add_custom_improvement_task`` with one bad part."""
    poison = draw(st.sampled_from(["model", "type", "priority"]))
    kinds = [*KINDS, *STRATEGIES]
    kind = draw(
        texts.filter(lambda s: s not in kinds) if poison == "type" else st.sampled_from(kinds)
    )
    priority: Any = draw(
        st.one_of(
            st.floats(max_value=0.0),
            st.sampled_from([math.inf, -math.inf, math.nan, "high", None, [1]]),
        )
        if poison == "priority"
        else st.floats(min_value=0.01, max_value=100.0)
    )
    return {
        "model_id": draw(model_names(valid=poison != "model")),
        "improvement_type": kind,
        "priority": priority,
    }


ids = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([0, 1, 2**31 - 1, 2**63]), anything)
WRITE_ARGS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "optimize_specific_model": optimize_args(),
    "add_custom_improvement_task": task_args(),
    # This home has one version and no code improvement: nothing to roll back or decide.
    "rollback_model": merged(
        st.one_of(model_names(valid=True), texts).map(lambda m: {"model_id": m}),
        maybe("version", ids),
    ),
    "approve_code_improvement": ids.map(lambda i: {"improvement_id": i}),
    "reject_code_improvement": merged(
        ids.map(lambda i: {"improvement_id": i}), maybe("reason", anything)
    ),
    "rollback_code_improvement": ids.map(lambda i: {"improvement_id": i}),
}


def test_tools_that_write_refuse_bad_arguments(session: Session) -> None:
    @fuzz(260)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        tool = data.draw(st.sampled_from(sorted(WRITE_ARGS)))
        call(session, tool, data.draw(WRITE_ARGS[tool]), must_refuse=True)

    calls = session.calls
    check()
    assert session.calls - calls >= 260 * 0.9


def test_unknown_tools_and_stray_arguments(session: Session) -> None:
    names = st.one_of(st.sampled_from(sorted({*READS, *WRITE_ARGS})), texts)

    @fuzz(60)
    @given(tool=names, args=st.dictionaries(texts, anything, max_size=4))
    def check(tool: str, args: dict[str, Any]) -> None:
        if tool in WRITE_ARGS:
            args = {**args, "model_id": "no-such-model", "improvement_id": -1}
        call(session, tool, args, must_refuse=tool not in READS)

    calls = session.calls
    check()
    assert session.calls - calls >= 60 * 0.9


def test_resources_with_any_uri(session: Session) -> None:
    uris = st.one_of(
        st.sampled_from(["selfimprove://status", "selfimprove://health", "selfimprove://nope"]),
        texts.map(lambda t: f"selfimprove://{t}"),
    )

    @fuzz(20)
    @given(uri=uris)
    def check(uri: str) -> None:
        try:
            session.call(session.client.read_resource(uri))
        except Exception as exc:  # an unknown resource is an MCP error with a reason
            assert str(exc).strip(), uri
        assert not session.tracebacks.records, [r.getMessage() for r in session.tracebacks.records]

    check()
