"""The MCP server: the integration's methods as tools an AI assistant can call.

Built on the official ``mcp`` SDK 2.x (``mcp.server.MCPServer``). Tools that change state say
so at the start of their description ("Changes state: ..."); ``read_only=True`` registers only
the tools that read. Code-improvement approval tools are registered only with
``allow_code_approval=True``; they run only the check command and root the server was started
with (``check_command``, ``code_root``), never the ones recorded in the ledger. A bad argument
comes back as an error result with the package's one-line message (a ``ToolError``), and
nothing is changed.

``register_tools`` registers one group at a time: the system's reads, its writes, seed 002's
engine reads, the engine's code approval, then the resources. The engine tools work over the
system's own ``Store`` (one connection pool per process); the engine leaves it open.

Resources: ``selfimprove://status``, ``selfimprove://health`` and ``selfimprove://dashboard``
(the latest dashboard page, rendered on request).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from selfimprove.errors import SelfImproveError
from selfimprove.loop.system import SelfImprovingNeuralSystem

if TYPE_CHECKING:
    from selfimprove.engine import SelfImprovementEngine

__all__ = ["ImprovementService", "build_server", "register_tools"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

WRITES = "Changes state: "
INSTRUCTIONS = (
    "selfimprove keeps a population of PyTorch models improving and proves every gain: each "
    "candidate is judged on a validation split with a paired significance test and the test "
    "split is only reported. Start with get_improvement_status or list_models; "
    "optimize_specific_model runs one judged experiment."
)


class ImprovementService(Protocol):
    """What the tools call: seed 000's integration methods (``SelfImprovementIntegration``).

    A contract rather than an import: the integration registers these tools on its host server
    (seed 001's ``enhanced_mcp``), so it imports this module, not the other way round.
    """

    system: SelfImprovingNeuralSystem

    async def initialize(self) -> dict[str, Any]: ...
    async def shutdown(self) -> None: ...
    async def get_improvement_status(self) -> dict[str, Any]: ...
    async def get_improvement_history(self, limit: int = 50) -> list[dict[str, Any]]: ...
    async def get_model_performance(self, model_id: str) -> dict[str, Any]: ...
    async def get_system_health_report(self) -> dict[str, Any]: ...
    async def export_improvement_data(self, fmt: str = "json") -> dict[str, Any] | str: ...
    async def add_custom_improvement_task(
        self, model_id: str, improvement_type: str = "training", priority: float = 1.0
    ) -> dict[str, Any]: ...
    async def optimize_specific_model(
        self, model_id: str, strategy: str = "auto", params: dict[str, Any] | None = None
    ) -> dict[str, Any]: ...


#: Largest id or version number a tool accepts (a 32-bit INTEGER column on every backend).
MAX_ID = 2**31 - 1


def _shown(arguments: dict[str, Any]) -> str:
    """A tool's arguments for a message, cut to one readable line."""
    text = repr(arguments)
    return text if len(text) <= 200 else text[:199] + "…"


def _tool_errors(fn: F) -> F:
    """Turn the package's errors into MCP tool errors that carry the one-line message."""
    from mcp.server.mcpserver.exceptions import ToolError

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except SelfImproveError as exc:
            raise ToolError(str(exc)) from None
        except OverflowError:  # JSON integers are unbounded; the database's are 64-bit
            raise ToolError(
                f"a number in {_shown(kwargs)} is too large; ids and version numbers are at "
                f"most {MAX_ID}."
            ) from None

    return wrapper  # type: ignore[return-value]


@dataclasses.dataclass
class _Tools:
    """Adds tools to one server and keeps their names in order; read-only drops the writers.

    Attributes:
        server: The ``MCPServer`` the tools go on.
        read_only: Skip every tool registered with ``writes=True``.
        names: The names registered so far.
    """

    server: Any
    read_only: bool
    names: list[str] = dataclasses.field(default_factory=list)

    def tool(self, description: str, *, writes: bool = False) -> Callable[[F], F]:
        """A decorator that registers ``fn`` as the tool ``fn.__name__``.

        Args:
            description: What the tool does and its arguments' bounds; a writer's description
                is prefixed with :data:`WRITES`.
            writes: The tool changes state (skipped when read-only).
        """

        def deco(fn: F) -> F:
            if writes and self.read_only:
                return fn
            self.server.add_tool(
                _tool_errors(fn),
                name=fn.__name__,
                description=(WRITES + description) if writes else description,
            )
            self.names.append(fn.__name__)
            return fn

        return deco


def _engine(integration: ImprovementService, **code: Any) -> SelfImprovementEngine:
    """Seed 002's engine over the system's own store: no second connection pool.

    The engine was given the store, so closing the engine leaves the store open. ``code``:
    the root and check command code approval is configured with.
    """
    from selfimprove.engine import SelfImprovementEngine

    system = integration.system
    return SelfImprovementEngine(store=system.store, home=system.improver.home, **code)


def _code_settings(
    code_root: str | os.PathLike[str] | None, check_command: str | Sequence[str] | None
) -> dict[str, Any]:
    """The engine settings of the code-approval tools, checked now (a bad command is an error
    when the server is built, not when a tool is called)."""
    from selfimprove.engine.codepatch import parse_command, resolve_root

    root = resolve_root(code_root if code_root is not None else os.getcwd())
    return {"root": root, "check_command": parse_command(check_command)}


def _plain(obj: Any) -> Any:
    """Records (dataclasses, lists of them, dicts) as JSON-safe data."""
    from selfimprove.store import clean_json

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, list):
        return [_plain(o) for o in obj]
    return json.loads(json.dumps(clean_json(obj), default=str))


def _without_contents(record: Any) -> dict[str, Any]:
    """A code improvement as JSON-safe data, without the file contents before and after."""
    return {k: v for k, v in _plain(record).items() if not k.endswith("_content")}


def _register_reads(tools: _Tools, integration: ImprovementService) -> None:
    """The system's read tools: status, history, one model's performance, health, export."""

    @tools.tool(
        "Status of the self-improving system: whether the loop runs, the cycle number, total "
        "promotions, hormone levels, genetic triggers (active or not, fitness), bandit "
        "estimates per (weakness kind, model family), the queue of user tasks and health."
    )
    async def get_improvement_status() -> dict[str, Any]:
        return await integration.get_improvement_status()

    @tools.tool(
        "The newest experiments (judged improvement attempts), newest first: model, strategy, "
        "targeted objective, status, decision (promote/reject), validation before/after, test "
        "before/after (reported only), p-value and the judge's reason. limit: 1-1000."
    )
    async def get_improvement_history(limit: int = 20) -> list[dict[str, Any]]:
        if not 1 <= limit <= 1000:
            raise SelfImproveError(f"limit must be between 1 and 1000, but got {limit=}.")
        return await integration.get_improvement_history(limit)

    @tools.tool(
        "Performance of one model: its incumbent version (strategy, origin, sha256, metrics, "
        "architecture params), number of versions, experiments and promotions, and the "
        "measurement time series per objective. model_id: a name from list_models."
    )
    async def get_model_performance(model_id: str) -> dict[str, Any]:
        return await integration.get_model_performance(model_id)

    @tools.tool(
        "Health report: overall health in [0, 1], improvement efficiency (mean realised gain "
        "per experiment), system stability (1 - failure rate), learning rate (mean gain per "
        "cycle), hormones, active triggers and resources."
    )
    async def get_system_health_report() -> dict[str, Any]:
        return await integration.get_system_health_report()

    @tools.tool(
        "All improvement data: models and versions, capabilities, measurements, experiments, "
        "events, cycle metrics, meta-learnings and brain state. format: 'json' (an object) or "
        "'csv' (the experiments table as text)."
    )
    async def export_improvement_data(format: str = "json") -> dict[str, Any] | str:
        return await integration.export_improvement_data(format)

    @tools.tool(
        "The registered models: name, task, family, incumbent version, number of versions and "
        "the incumbent's validation and test figures."
    )
    async def list_models() -> list[dict[str, Any]]:
        from selfimprove.store import clean_json

        return clean_json(integration.system.improver.models())


def _register_writes(tools: _Tools, integration: ImprovementService) -> None:
    """The system's write tools: queue a task, run one experiment now, roll a model back."""

    @tools.tool(
        "queues a user task for the next cycle, ahead of the planned one. model_id: a model "
        "name; improvement_type: 'training', 'optimisation', 'architecture', 'distillation' or "
        "a strategy name (train, retrain, tune, evolve, quantize, prune, distill); priority > 0.",
        writes=True,
    )
    async def add_custom_improvement_task(
        model_id: str, improvement_type: str = "training", priority: float = 1.0
    ) -> dict[str, Any]:
        return await integration.add_custom_improvement_task(model_id, improvement_type, priority)

    @tools.tool(
        "runs one judged experiment on a model now and promotes the candidate only if the "
        "judge accepts it. strategy: 'auto' (the system's plan) or a strategy name (train, "
        "retrain, tune, evolve, grow, quantize, prune, distill, heads). params: that "
        "strategy's settings, e.g. {'lr': 0.001} for train; an unknown setting or a bad "
        "value is refused before anything runs. Takes seconds to minutes.",
        writes=True,
    )
    async def optimize_specific_model(
        model_id: str, strategy: str = "auto", params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return await integration.optimize_specific_model(model_id, strategy, params)

    @tools.tool(
        "restores a previous version of a model as its incumbent after verifying its "
        "checksum. version: a version number (1 to 2147483647), or 0 for the previously "
        "replaced incumbent.",
        writes=True,
    )
    async def rollback_model(model_id: str, version: int = 0) -> dict[str, Any]:
        if not 0 <= version <= MAX_ID:
            raise SelfImproveError(
                f"version must be between 0 and {MAX_ID} (0: the previous incumbent), but got "
                f"{version=}."
            )
        v = integration.system.improver.rollback(model_id, version or None)
        return {"model": model_id, "incumbent": v.number, "sha256": v.sha256}


def _register_engine_reads(tools: _Tools, integration: ImprovementService) -> None:
    """Seed 002's engine, read-only: capabilities, weaknesses, self-assessment, code changes."""

    @tools.tool(
        "The engine's capabilities (every model objective is one, named <model>/<objective>): "
        "current value, baseline, target, direction, direction-aware gap and level."
    )
    async def list_capabilities() -> list[dict[str, Any]]:
        with _engine(integration) as e:
            return _plain(e.profile_all_capabilities())

    @tools.tool(
        "The engine's recorded weaknesses (read as stored; nothing is recomputed): name, "
        "type, severity (critical/high/medium/low), impact, gap, status and evidence. "
        "include_closed: also resolved and won't-fix ones."
    )
    async def list_weaknesses(include_closed: bool = False) -> list[dict[str, Any]]:
        from selfimprove.store import WeaknessStatus

        statuses = None if include_closed else (WeaknessStatus.OPEN, WeaknessStatus.IN_PROGRESS)
        return _plain(integration.system.store.list_weaknesses(statuses=statuses))

    @tools.tool(
        "The engine's self-assessment: learning quality = 0.6 x share of experiments beating "
        "their expectation + 0.4 x weakness resolution rate, grade A-D, the counts behind it "
        "and the trend."
    )
    async def get_self_assessment() -> dict[str, Any]:
        with _engine(integration) as e:
            return _plain(e.get_self_assessment())

    @tools.tool(
        "Code improvements proposed to the engine: id, name, file, function, status "
        "(pending/applied/rejected/rolled_back), the check command each records (argv and "
        "command_line), hashes before and after, check results, the approval digest. diff: "
        "also each change as a unified diff (read it before approving)."
    )
    async def list_code_improvements(diff: bool = False) -> list[dict[str, Any]]:
        from selfimprove.engine import command_line, record_digest, unified_diff

        with _engine(integration) as e:
            recs = e.list_improvements()
        return [
            {
                **_without_contents(r),
                "command_line": command_line(r.check_command),
                "digest": record_digest(r),
                **({"diff": unified_diff(r)} if diff else {}),
            }
            for r in recs
        ]


def _register_code_approval(
    tools: _Tools, integration: ImprovementService, code: dict[str, Any]
) -> None:
    """Seed 002's code-change decisions: approve, reject, roll back (all write), configured
    with ``code`` (root and check command), never with what the ledger records."""
    from selfimprove.engine import command_line

    @tools.tool(
        "applies a pending code improvement to its file. Only this server's check command "
        f"runs, before and after: `{command_line(code['check_command'])}`, in "
        f"{str(code['root'])!r}; a proposal that records another command or root, or was "
        "altered in the database, is refused before anything runs. A failing check restores "
        "the file and rejects the change. improvement_id: from list_code_improvements. "
        "digest: optional, at least 12 hex digits of the digest list_code_improvements "
        "showed; only a change with that digest is approved.",
        writes=True,
    )
    async def approve_code_improvement(improvement_id: int, digest: str = "") -> dict[str, Any]:
        with _engine(integration, **code) as e:
            plan = e.plan_approval(improvement_id, digest or None)
            out = e.approve_improvement(improvement_id, actor="mcp", expected_digest=plan.digest)
        return {**_without_contents(out), "command_line": plan.command_line, "digest": plan.digest}

    @tools.tool(
        "rejects a pending code improvement (its file is never touched). reason: why.",
        writes=True,
    )
    async def reject_code_improvement(improvement_id: int, reason: str = "") -> dict[str, Any]:
        with _engine(integration) as e:
            out = e.reject_improvement(improvement_id, reason, actor="mcp")
        return _without_contents(out)

    @tools.tool(
        "restores the exact bytes a file had before an applied code improvement (refused "
        "if the file was edited since, if it was recorded under another root than this "
        "server's, or if its row was altered in the database).",
        writes=True,
    )
    async def rollback_code_improvement(improvement_id: int) -> dict[str, Any]:
        with _engine(integration, **code) as e:
            out = e.rollback_improvement(improvement_id, actor="mcp")
        return _without_contents(out)


def _register_resources(server: Any, integration: ImprovementService) -> None:
    """The resources: ``selfimprove://status``, ``selfimprove://health``, ``…://dashboard``."""

    async def status_resource() -> str:
        return json.dumps(await integration.get_improvement_status(), default=str)

    async def health_resource() -> str:
        return json.dumps(await integration.get_system_health_report(), default=str)

    async def dashboard_resource() -> str:
        from selfimprove.surfaces.report.dashboard import render_dashboard

        return render_dashboard(integration.system.improver)

    server.resource(
        "selfimprove://status",
        name="status",
        mime_type="application/json",
        description="The system's status (same as get_improvement_status).",
    )(status_resource)
    server.resource(
        "selfimprove://health",
        name="health",
        mime_type="application/json",
        description="The health report (same as get_system_health_report).",
    )(health_resource)
    server.resource(
        "selfimprove://dashboard",
        name="dashboard",
        mime_type="text/html",
        description="The dashboard: one self-contained HTML page with every chart.",
    )(dashboard_resource)


def register_tools(
    server: Any,
    integration: ImprovementService,
    *,
    read_only: bool = False,
    allow_code_approval: bool = False,
    code_root: str | os.PathLike[str] | None = None,
    check_command: str | Sequence[str] | None = None,
) -> list[str]:
    """Register the integration's tools and resources on an ``MCPServer``.

    Args:
        server: The ``MCPServer`` (or seed 001's ``enhanced_mcp``) to register on.
        integration: What the tools call.
        read_only: Register only the tools that read (resources are always read-only).
        allow_code_approval: Also register the engine's code-approval tools (they write, so
            ``read_only`` drops them too).
        code_root: The only folder code approval may change, where its check runs (default:
            the working folder).
        check_command: The only check command code approval runs (default: none); a proposal
            that records another one is refused.

    Returns:
        The names of the tools registered, in registration order.
    """
    tools = _Tools(server, read_only)
    _register_reads(tools, integration)
    _register_writes(tools, integration)
    _register_engine_reads(tools, integration)
    if allow_code_approval:
        _register_code_approval(tools, integration, _code_settings(code_root, check_command))
    _register_resources(server, integration)
    return tools.names


def build_server(
    integration: ImprovementService,
    *,
    read_only: bool = False,
    allow_code_approval: bool = False,
    code_root: str | os.PathLike[str] | None = None,
    check_command: str | Sequence[str] | None = None,
) -> Any:
    """A new ``MCPServer`` named ``selfimprove`` with every tool and resource registered.

    ``allow_code_approval``, ``code_root`` and ``check_command``: see :func:`register_tools`.

    The server's lifespan initialises the integration (built-in models into an empty store;
    the loop only if ``auto_start``) and shuts it down when the server stops.
    """
    from mcp.server import MCPServer

    @contextlib.asynccontextmanager
    async def lifespan(_server: Any) -> AsyncIterator[None]:
        await integration.initialize()
        try:
            yield
        finally:
            await integration.shutdown()

    server = MCPServer(
        "selfimprove", instructions=INSTRUCTIONS, log_level="WARNING", lifespan=lifespan
    )
    register_tools(
        server,
        integration,
        read_only=read_only,
        allow_code_approval=allow_code_approval,
        code_root=code_root,
        check_command=check_command,
    )
    return server
