"""The MCP server through the official SDK's client: in memory and over stdio (a subprocess)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from selfimprove.config import SelfImprovementConfig
from selfimprove.measure.training import TrainConfig, train_
from selfimprove.surfaces.integration import SelfImprovementIntegration
from selfimprove.surfaces.mcp_server import WRITES, build_server

ROOT = Path(__file__).resolve().parents[2]
CFG = SelfImprovementConfig(auto_start=False, train_epochs=10, train_seconds=20.0)
WRITE_TOOLS = {"add_custom_improvement_task", "optimize_specific_model", "rollback_model"}


def _home_with_wine(home: Path) -> None:
    from selfimprove.loop.improver import SelfImprover

    task_ref = "tests._tasks:wine"
    from selfimprove.tasks import resolve_task

    task = resolve_task(task_ref)
    torch.manual_seed(0)
    module = task.build({"width": 16, "depth": 1})
    train_(module, task, TrainConfig(epochs=1, lr=1e-3, seed=0))
    with SelfImprover(home) as si:
        si.register_model("wine", task_ref, module, {"width": 16, "depth": 1})


def _payload(result: Any) -> Any:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        sc = result.structured_content
        return sc.get("result", sc) if isinstance(sc, dict) and set(sc) == {"result"} else sc
    return json.loads(result.content[0].text)


async def _session(client: Any) -> dict[str, Any]:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    out = _payload(
        await client.call_tool("optimize_specific_model", {"model_id": "wine", "strategy": "train"})
    )
    status = _payload(await client.call_tool("get_improvement_status", {}))
    history = _payload(await client.call_tool("get_improvement_history", {"limit": 5}))
    res = await client.read_resource("selfimprove://status")
    bad = await client.call_tool("optimize_specific_model", {"model_id": "nope"})
    return {
        "tools": tools,
        "out": out,
        "status": status,
        "history": history,
        "resource": json.loads(res.contents[0].text),
        "bad": bad,
    }


def _check(session: dict[str, Any]) -> None:
    tools = session["tools"]
    assert set(tools) >= WRITE_TOOLS and "get_model_performance" in tools
    for name in WRITE_TOOLS:
        assert tools[name].description.startswith(WRITES)
    assert session["out"]["status"] == "completed" and session["out"]["strategy"] == "train"
    assert session["history"][0]["model"] == "wine"
    assert session["status"]["total_improvements"] >= 0 and "hormones" in session["status"]
    assert "hormones" in session["resource"]
    bad = session["bad"]
    assert bad.is_error and "unknown model 'nope'" in bad.content[0].text


def test_in_memory_client_session(tmp_path: Path) -> None:
    from mcp import Client

    _home_with_wine(tmp_path)
    integration = SelfImprovementIntegration(config=CFG, home=tmp_path)
    server = build_server(integration)

    async def go() -> dict[str, Any]:
        async with Client(server) as client:
            return await _session(client)

    _check(asyncio.run(go()))


def test_stdio_client_session_with_a_real_subprocess(tmp_path: Path) -> None:
    from mcp import Client, StdioServerParameters

    _home_with_wine(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "selfimprove", "mcp", "--home", str(tmp_path)],
        env=env,
        cwd=str(ROOT),
    )

    async def go() -> dict[str, Any]:
        async with Client(params) as client:
            return await _session(client)

    _check(asyncio.run(go()))


def test_read_only_hides_writes_and_bad_arguments_change_nothing(tmp_path: Path) -> None:
    from mcp import Client

    _home_with_wine(tmp_path)
    integration = SelfImprovementIntegration(config=CFG, home=tmp_path, read_only=True)
    server = build_server(integration, read_only=True)

    async def go() -> tuple[set[str], list[Any]]:
        async with Client(server) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            results = [
                await client.call_tool("get_model_performance", {"model_id": "nope"}),
                await client.call_tool("get_improvement_history", {"limit": 0}),
                await client.call_tool("get_improvement_history", {"limit": "many"}),
                await client.call_tool("export_improvement_data", {"format": "xml"}),
            ]
            return names, results

    before = _snapshot(tmp_path)
    names, results = asyncio.run(go())
    assert not (names & WRITE_TOOLS) and "get_improvement_status" in names
    assert all(r.is_error for r in results)
    assert "unknown model" in results[0].content[0].text
    assert "limit must be between 1 and 1000" in results[1].content[0].text
    assert _snapshot(tmp_path) == before


def _snapshot(home: Path) -> str:
    from selfimprove.loop.improver import SelfImprover

    with SelfImprover(home) as si:
        data = json.loads(si.export("json"))
    data.pop("exported_at")
    return json.dumps(data, sort_keys=True)


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_integration_methods_from_a_plain_asyncio_script(tmp_path: Path, fmt: str) -> None:
    _home_with_wine(tmp_path)

    async def go() -> Any:
        integ = SelfImprovementIntegration(config=CFG, home=tmp_path)
        await integ.initialize()
        task = await integ.add_custom_improvement_task("wine", "retrain", 2.0)
        perf = await integ.get_model_performance("wine")
        health = await integ.get_system_health_report()
        data = await integ.export_improvement_data(fmt)
        await integ.shutdown()
        return task, perf, health, data

    task, perf, health, data = asyncio.run(go())
    assert task["strategy"] == "retrain" and task["priority"] == 2.0
    assert perf["incumbent"]["version"] == 1 and "accuracy" in perf["measurements"]
    assert 0 <= health["overall_health"] <= 1
    assert (isinstance(data, dict) and "models" in data) or data.startswith("id,cycle")


def test_optimize_checks_the_strategy_settings_before_anything_runs(tmp_path: Path) -> None:
    from mcp import Client

    _home_with_wine(tmp_path)
    integration = SelfImprovementIntegration(config=CFG, home=tmp_path)
    server = build_server(integration)
    bad = [
        ({"strategy": "train", "params": {"nosuchkey": 1}}, "does not understand the settings"),
        ({"strategy": "train", "params": {"lr": "abc"}}, "lr='abc' is not a finite number"),
        ({"strategy": "train", "params": {"lr": -1}}, "lr=-1 is not a finite number"),
        ({"strategy": "tune", "params": {"trial_epochs": 999_999}}, "the budget's epochs"),
        ({"strategy": "auto", "params": {"lr": 0.01}}, "name the strategy"),
    ]

    async def go() -> tuple[list[Any], Any]:
        async with Client(server) as client:
            refused = [
                await client.call_tool("optimize_specific_model", {"model_id": "wine", **args})
                for args, _ in bad
            ]
            before = _snapshot(tmp_path)
            ran = await client.call_tool(
                "optimize_specific_model",
                {"model_id": "wine", "strategy": "train", "params": {"lr": "0.01"}},
            )
            return refused, (before, _payload(ran))

    before = _snapshot(tmp_path)
    refused, (unchanged, ran) = asyncio.run(go())
    for result, (_, needle) in zip(refused, bad, strict=True):
        assert result.is_error and needle in result.content[0].text, result.content
    assert unchanged == before  # nothing recorded by the refused calls
    assert ran["status"] == "completed" and ran["task"]["params"] == {"lr": 0.01}
