"""The engine's tools over MCP: reads always; code approval only when explicitly allowed."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from selfimprove.config import SelfImprovementConfig
from selfimprove.engine import SelfImprovementEngine
from selfimprove.surfaces.integration import SelfImprovementIntegration
from selfimprove.surfaces.mcp_server import WRITES, build_server
from tests.engine.conftest import CHECK, FAST_F, SLOW_MODULE
from tests.surfaces.conftest import Constructed

APPROVAL = {"approve_code_improvement", "reject_code_improvement", "rollback_code_improvement"}


def _payload(result: Any) -> Any:
    assert not result.is_error, result.content
    sc = result.structured_content
    if sc is not None:
        return sc.get("result", sc) if isinstance(sc, dict) and set(sc) == {"result"} else sc
    return json.loads(result.content[0].text)


def test_engine_tools_and_code_approval(tmp_path: Path) -> None:
    from mcp import Client

    home, root = tmp_path / "home", tmp_path / "project"
    root.mkdir()
    (root / "mod.py").write_bytes(SLOW_MODULE)
    check = [sys.executable, "-c", CHECK]
    with SelfImprovementEngine(home=home, root=root, check_command=check) as e:
        e.register_capability("lat", "performance", target=2.0, unit="s", direction="minimize")
        e.measure_capability("lat", 10.0)
        e.analyze_weaknesses()
        proposal = e.apply_improvement("multiply", "mod.py", "f", FAST_F)
    cfg = SelfImprovementConfig(auto_start=False)

    async def session(allow: bool) -> dict[str, Any]:
        integ = SelfImprovementIntegration(config=cfg, home=home)
        server = build_server(integ, allow_code_approval=allow, code_root=root, check_command=check)
        async with Client(server) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            out: dict[str, Any] = {"tools": tools}
            out["caps"] = _payload(await client.call_tool("list_capabilities", {}))
            out["weak"] = _payload(await client.call_tool("list_weaknesses", {}))
            out["grade"] = _payload(await client.call_tool("get_self_assessment", {}))
            if allow:
                out["approved"] = _payload(
                    await client.call_tool(
                        "approve_code_improvement", {"improvement_id": proposal.id}
                    )
                )
                out["after_approve"] = (root / "mod.py").read_bytes()
                out["rolled_back"] = _payload(
                    await client.call_tool(
                        "rollback_code_improvement", {"improvement_id": proposal.id}
                    )
                )
                out["bad"] = await client.call_tool(
                    "approve_code_improvement", {"improvement_id": 999}
                )
            return out

    closed = asyncio.run(session(False))
    assert not (set(closed["tools"]) & APPROVAL)
    assert any(c["name"] == "lat" and c["level"] == "critical" for c in closed["caps"])
    assert any(w["severity"] == "critical" for w in closed["weak"])
    assert closed["grade"]["grade"] in "ABCD"

    opened = asyncio.run(session(True))
    assert set(opened["tools"]) >= APPROVAL
    assert all(opened["tools"][n].description.startswith(WRITES) for n in APPROVAL)
    assert opened["approved"]["status"] == "applied"
    assert b"return n * n" in opened["after_approve"]
    assert opened["rolled_back"]["status"] == "rolled_back"
    restored = (root / "mod.py").read_bytes()
    assert hashlib.sha256(restored).hexdigest() == hashlib.sha256(SLOW_MODULE).hexdigest()
    assert opened["bad"].is_error and "999" in opened["bad"].content[0].text


def test_engine_tools_and_dashboard_work_over_the_systems_own_store(
    tmp_path: Path, constructed: Constructed
) -> None:
    from mcp import Client

    home, root = tmp_path / "home", tmp_path / "project"
    root.mkdir()
    (root / "mod.py").write_bytes(SLOW_MODULE)
    with SelfImprovementEngine(home=home, root=root) as e:
        e.register_capability("lat", "performance", target=2.0, unit="s", direction="minimize")
        e.measure_capability("lat", 10.0)
        proposal = e.apply_improvement("multiply", "mod.py", "f", FAST_F)
    integ = SelfImprovementIntegration(config=SelfImprovementConfig(auto_start=False), home=home)
    store = integ.system.store
    pool = store.engine.pool  # closing a store disposes its pool: a new pool object
    server = build_server(integ, allow_code_approval=True)

    async def session() -> dict[str, Any]:
        async with Client(server) as client:
            constructed.engines.clear()
            constructed.stores.clear()
            out = {
                name: _payload(await client.call_tool(name, args))
                for name, args in [
                    ("list_capabilities", {}),
                    ("get_self_assessment", {}),
                    ("list_code_improvements", {}),
                    ("reject_code_improvement", {"improvement_id": proposal.id}),
                ]
            }
            page = (await client.read_resource("selfimprove://dashboard")).contents[0]
            out["dashboard"] = getattr(page, "text", "")
            out["pool_in_session"] = store.engine.pool
            return out

    out = asyncio.run(session())
    assert any(c["name"] == "lat" for c in out["list_capabilities"])
    assert out["get_self_assessment"]["grade"] in "ABCD"
    assert [r["id"] for r in out["list_code_improvements"]] == [proposal.id]
    assert out["reject_code_improvement"]["status"] == "rejected"
    assert "Self-assessment: grade" in out["dashboard"]
    # one engine per engine call and one for the dashboard, every one over the system's store
    assert len(constructed.engines) == 5
    assert all(e.store is store for e in constructed.engines)
    assert constructed.stores == []  # no second store, so no second connection pool
    assert out["pool_in_session"] is pool  # and no engine closed the store it was given


def test_code_approval_over_mcp_runs_only_the_servers_command(tmp_path: Path) -> None:
    from mcp import Client

    home, root, marker = tmp_path / "home", tmp_path / "project", tmp_path / "ran"
    root.mkdir()
    (root / "mod.py").write_bytes(SLOW_MODULE)
    check = [sys.executable, "-c", CHECK]
    evil = [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ran')"]
    with SelfImprovementEngine(home=home, root=root, check_command=check) as e:
        altered = e.apply_improvement("multiply", "mod.py", "f", FAST_F)
        moved = e.apply_improvement("multiply again", "mod.py", "f", FAST_F)
        with e.store.engine.begin() as conn:  # as anyone who can write the database could
            conn.exec_driver_sql(
                "UPDATE code_improvements SET check_command = ? WHERE id = ?",
                (json.dumps(evil), altered.id),
            )
            conn.exec_driver_sql(
                "UPDATE code_improvements SET root = '/' WHERE id = ?", (moved.id,)
            )
    integ = SelfImprovementIntegration(config=SelfImprovementConfig(auto_start=False), home=home)
    server = build_server(integ, allow_code_approval=True, code_root=root, check_command=check)

    async def session() -> dict[str, Any]:
        async with Client(server) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            return {
                "description": tools["approve_code_improvement"].description,
                "listed": _payload(
                    await client.call_tool("list_code_improvements", {"diff": True})
                ),
                "altered": await client.call_tool(
                    "approve_code_improvement", {"improvement_id": altered.id}
                ),
                "moved": await client.call_tool(
                    "approve_code_improvement", {"improvement_id": moved.id}
                ),
            }

    out = asyncio.run(session())
    assert shlex.join(check) in out["description"]
    first = out["listed"][0]
    assert first["command_line"] == shlex.join(evil) and "+    return n * n" in first["diff"]
    assert out["altered"].is_error and "records the check command" in out["altered"].content[0].text
    assert out["moved"].is_error and "records the root '/'" in out["moved"].content[0].text
    assert not marker.exists() and (root / "mod.py").read_bytes() == SLOW_MODULE
    with SelfImprovementEngine(home=home) as e:
        assert {r.status.value for r in e.list_improvements()} == {"pending"}
