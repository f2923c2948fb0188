"""The dashboard: one self-contained HTML page (plotly with its JavaScript inlined; no network).

Sections, all drawn from the store:

- metric trajectories per model (validation value of the primary objective after every cycle,
  on a log axis for errors), promotions, rejected candidates and rollbacks marked;
- hormone levels per cycle;
- genetic triggers: rule, fitness, times boosted, active now;
- strategy effectiveness: experiments, promotions and mean realised gain per strategy, and the
  bandit's posterior means;
- the experiment table with decisions, p-values and test figures;
- health (formulas in ``docs/architecture.md``);
- the engine's weaknesses and self-assessment grade, when the engine has written any.
"""

from __future__ import annotations

import bisect
import html
import math
from collections import defaultdict
from datetime import datetime
from typing import Any

from selfimprove.loop.improver import SelfImprover
from selfimprove.store import Decision, ExperimentRecord, utcnow

__all__ = ["hormone_figure", "render_dashboard", "trajectory_figures"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1b1f24}
h1{font-size:1.5rem;margin:0 0 4px} h2{font-size:1.15rem;margin:28px 0 8px}
.muted{color:#57606a} table{border-collapse:collapse;font-size:.85rem}
td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa} .promote{color:#1a7f37;font-weight:600} .reject{color:#9a6700}
.failed{color:#cf222e} .cards{display:flex;gap:16px;flex-wrap:wrap}
.card{border:1px solid #d0d7de;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:1.3rem}
"""


def _fig_html(fig: Any) -> str:
    import plotly.io as pio

    return str(
        pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=False,
            config={"displaylogo": False, "responsive": True},
        )
    )


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return html.escape(str(v))


def _tick_step(span: float) -> int:
    """A whole, round step between ticks of a cycle axis spanning ``span`` cycles (about ten
    ticks at most): 1, 2, 5, 10, 20, 50, ... — never a fractional cycle such as 1.5."""
    step, k = 1, 0
    while span / step > 10:
        k += 1
        step = (1, 2, 5)[k % 3] * 10 ** (k // 3)
    return step


def _cycle_axis(first: int, last: int) -> dict[str, Any]:
    """A plotly x axis over cycles ``first..last`` with whole-number ticks."""
    return {"tickmode": "linear", "tick0": 0, "dtick": _tick_step(last - first), "tickformat": "d"}


class _CycleClock:
    """Which cycle a moment belongs to: the number of the last system cycle that had finished
    by then (0 before the first), read from the cycle metrics' timestamps.

    An incumbent observed at the start of cycle ``k`` is thus drawn at ``k - 1`` (its state
    after cycle ``k - 1``), and a candidate judged in cycle ``k`` at ``k``.
    """

    def __init__(self, cycles: list[dict[str, Any]]) -> None:
        ends = sorted((r["timestamp"], int(r["iteration"])) for r in cycles if r.get("timestamp"))
        self._times = [t for t, _ in ends]
        self._numbers = [n for _, n in ends]

    def __bool__(self) -> bool:
        return bool(self._times)

    @property
    def last(self) -> int:
        """The newest cycle (0: none ran)."""
        return max(self._numbers, default=0)

    def after(self, at: datetime) -> int:
        """The last cycle that finished at or before ``at`` (0: none had)."""
        i = bisect.bisect_right(self._times, at)
        return self._numbers[i - 1] if i else 0

    def x(self, at: datetime, cycle: object = None) -> int | datetime:
        """Where something of ``at`` goes on the x axis: its own ``cycle`` when it has one, else
        the cycle that had finished by then; the time itself when no cycle has run."""
        if not self:
            return at
        return cycle if isinstance(cycle, int) else self.after(at)


def _label(versions: dict[int, int], version_id: int | None, at: datetime) -> str:
    return f"v{versions.get(version_id or -1, '?')} · {at.isoformat(timespec='seconds')}Z"


def _trajectories(si: SelfImprover) -> str:
    parts = [_fig_html(fig) for fig in trajectory_figures(si)]
    return "".join(parts) or "<p class=muted>No measurements yet.</p>"


def trajectory_figures(si: SelfImprover) -> list[Any]:
    """One plotly figure per model: its primary objective's validation value after each cycle.

    The line follows the incumbent (stars: promotions); rejected candidates are small grey
    markers at the validation value they reached. Errors (objectives to minimise, all values
    positive) are drawn on a log axis, where every halving of the error is the same step;
    accuracy-like objectives keep a linear one (their interesting range is near the top).
    Without any system cycle (only ``selfimprove improve`` so far) the x axis is the time.
    """
    import plotly.graph_objects as go

    store = si.store
    clock = _CycleClock(store.list_cycle_metrics())
    rejected: dict[int, list[ExperimentRecord]] = defaultdict(list)
    for e in store.list_experiments():
        if e.decision is Decision.REJECT and e.model_id is not None:
            rejected[e.model_id].append(e)
    figures = []
    for model in store.list_models():
        caps = [c for c in store.list_capabilities(model.id) if c.objective]
        if not caps:
            continue
        primary = caps[0]
        points = store.list_measurements(primary.id, split="validation")
        if not points:
            continue
        versions = {v.id: v.number for v in store.list_versions(model.id)}
        # an incumbent's observation has no cycle of its own; a promotion has its cycle's
        placed = sorted(
            (
                (
                    clock.x(
                        p.measured_at,
                        p.context.get("cycle") if p.context.get("role") == "promoted" else None,
                    ),
                    p,
                )
                for p in points
            ),
            key=lambda xp: (xp[0], xp[1].measured_at) if clock else (xp[1].measured_at,),
        )
        losers = [
            (clock.x(e.created_at, e.cycle), float(e.statistics["after"]), e)
            for e in rejected.get(model.id, [])
            if e.objective == primary.objective
            and isinstance(e.statistics.get("after"), (int, float))
            and math.isfinite(e.statistics["after"])
        ]
        ys = [p.value for _, p in placed] + [y for _, y, _ in losers]
        log = primary.direction == "minimize" and all(y > 0 for y in ys)

        hover = "%{text}<br>" + ("cycle %{x}" if clock else "%{x}") + ": %{y:.4g}<extra></extra>"
        line_x: list[Any] = [x for x, _ in placed]
        line_y = [p.value for _, p in placed]
        line_text = [_label(versions, p.version_id, p.measured_at) for _, p in placed]
        if clock and isinstance(line_x[-1], int) and line_x[-1] < clock.last:
            # a reused observation is not recorded again: the incumbent held until now
            line_x.append(clock.last)
            line_y.append(line_y[-1])
            line_text.append(f"{line_text[-1].split(' · ')[0]}, still the incumbent")
        fig = go.Figure()
        fig.add_trace(
            go.Scatter(
                x=line_x,
                y=line_y,
                mode="lines+markers",
                name=f"{primary.objective} (validation)",
                text=line_text,
                hovertemplate=hover,
                line={"color": "#1f6feb"},
            )
        )
        promoted = [(x, p) for x, p in placed if p.context.get("role") == "promoted"]
        if promoted:
            fig.add_trace(
                go.Scatter(
                    x=[x for x, _ in promoted],
                    y=[p.value for _, p in promoted],
                    mode="markers",
                    name="promotion",
                    text=[_label(versions, p.version_id, p.measured_at) for _, p in promoted],
                    hovertemplate="promoted " + hover,
                    marker={"symbol": "star", "size": 13, "color": "#1a7f37"},
                )
            )
        if losers:
            fig.add_trace(
                go.Scatter(
                    x=[x for x, _, _ in losers],
                    y=[y for _, y, _ in losers],
                    mode="markers",
                    name="rejected candidate",
                    text=[
                        f"experiment {e.id} ({e.strategy}) · "
                        f"{e.created_at.isoformat(timespec='seconds')}Z"
                        for _, _, e in losers
                    ],
                    hovertemplate="rejected " + hover,
                    marker={"size": 7, "color": "rgba(110,119,129,0.55)"},
                )
            )
        for ev in store.list_events(kind="rollback", model_id=model.id):
            if ev.created_at is None:
                continue
            # a rollback happens between cycles: after the one that had finished
            x = clock.after(ev.created_at) + 0.5 if clock else ev.created_at
            fig.add_vline(x=x, line_dash="dash", line_color="#cf222e")
        if primary.target is not None and (primary.target > 0 or not log):
            fig.add_hline(y=primary.target, line_dash="dot", line_color="#57606a")
            # placed by hand: on a log axis an annotation's y is the exponent (add_hline's own
            # annotation would stretch the axis up to 10**target)
            fig.add_annotation(
                text="target",
                x=1,
                xref="x domain",
                xanchor="right",
                y=math.log10(primary.target) if log else primary.target,
                yanchor="bottom",
                showarrow=False,
                font={"color": "#57606a", "size": 11},
            )
        xs = [x for x in line_x if isinstance(x, int)] + [
            x for x, _, _ in losers if isinstance(x, int)
        ]
        fig.update_layout(
            title=f"{model.name} — {primary.objective}" + (" (log scale)" if log else ""),
            height=300,
            margin={"l": 50, "r": 10, "t": 40, "b": 40},
            xaxis=(
                {**_cycle_axis(min(xs), max(xs)), "title": "after cycle (0: before the first)"}
                if clock and xs
                else {"title": "time (no system cycle yet)"}
            ),
            yaxis={"type": "log" if log else "linear"},
        )
        figures.append(fig)
    return figures


def _hormones(si: SelfImprover) -> str:
    fig = hormone_figure(si)
    return _fig_html(fig) if fig else "<p class=muted>No cycles of the system yet.</p>"


def hormone_figure(si: SelfImprover) -> Any | None:
    """The hormone levels after each cycle (``None`` before the first cycle)."""
    import plotly.graph_objects as go

    rows = si.store.list_cycle_metrics()
    if not rows:
        return None
    fig = go.Figure()
    for name in rows[-1]["hormone_levels"]:
        fig.add_trace(
            go.Scatter(
                x=[r["iteration"] for r in rows],
                y=[r["hormone_levels"].get(name) for r in rows],
                mode="lines+markers",
                name=name,
            )
        )
    cycles = [int(r["iteration"]) for r in rows]
    fig.update_layout(
        title="Hormone levels after each cycle",
        xaxis={**_cycle_axis(min(cycles), max(cycles)), "title": "cycle"},
        yaxis={"range": [0, 1.02], "tickmode": "linear", "tick0": 0, "dtick": 0.2},
        height=300,
        margin={"l": 40, "r": 10, "t": 40, "b": 40},
    )
    return fig


def _triggers(si: SelfImprover) -> str:
    from selfimprove.brain.environment import measure_environment
    from selfimprove.brain.triggers import GeneticTriggerSystem

    saved = si.store.load_state("triggers")
    if not saved:
        return "<p class=muted>No trigger population saved yet.</p>"
    g = GeneticTriggerSystem.from_dict(saved)
    active = {t.id for t in g.get_active_triggers(measure_environment(si.store))}
    rows = "".join(
        f"<tr><td>{html.escape(t['id'])}</td><td>{html.escape(t['rule'])}</td>"
        f"<td>{_fmt(t['fitness'])}</td><td>{t['times_boosted']}</td>"
        f"<td>{'yes' if t['id'] in active else ''}</td></tr>"
        for t in sorted(g.summary(), key=lambda t: -t["fitness"])
    )
    return (
        f"<p class=muted>generation {g.generation}</p><table><tr><th>id</th><th>rule</th>"
        f"<th>fitness</th><th>boosted</th><th>active now</th></tr>{rows}</table>"
    )


def _strategies(si: SelfImprover) -> str:
    import plotly.graph_objects as go

    from selfimprove.meta.bandit import StrategyBandit

    tally: dict[str, list[float]] = defaultdict(list)
    for e in si.store.list_experiments():
        if e.status.value not in ("completed", "failed"):
            continue
        rel = e.statistics.get("relative_improvement") if e.decision is Decision.PROMOTE else 0.0
        tally[e.strategy].append(float(rel) if rel is not None and math.isfinite(rel) else 0.0)
    if not tally:
        return "<p class=muted>No experiments yet.</p>"
    names = sorted(tally)
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=names,
            y=[sum(tally[n]) / len(tally[n]) for n in names],
            name="mean realised gain",
            text=[f"n={len(tally[n])}, promoted {sum(g > 0 for g in tally[n])}" for n in names],
        )
    )
    fig.update_layout(
        title="Mean realised gain per experiment, by strategy",
        height=300,
        margin={"l": 40, "r": 10, "t": 40, "b": 30},
    )
    out = _fig_html(fig)
    saved = si.store.load_state("bandit")
    if saved:
        bandit = StrategyBandit.from_dict(saved)
        rows = "".join(
            f"<tr><td>{html.escape(k)} / {html.escape(f)}</td><td>{html.escape(arm)}</td>"
            f"<td>{_fmt(est['mean'])}</td><td>{int(est['n'])}</td></tr>"
            for k, f in bandit.contexts()
            for arm, est in sorted(bandit.estimates((k, f)).items())
        )
        out += (
            "<h3>Bandit estimates (gain per compute second)</h3><table><tr><th>context</th>"
            f"<th>strategy</th><th>posterior mean</th><th>n</th></tr>{rows}</table>"
        )
    return out


def _experiments(si: SelfImprover, limit: int = 50) -> str:
    names = {m.id: m.name for m in si.store.list_models()}
    rows = []
    for e in si.store.list_experiments(limit=limit, newest_first=True):
        st = e.statistics
        decision = e.decision.value if e.decision else e.status.value
        cls = "promote" if decision == "promote" else "failed" if decision == "failed" else "reject"
        rows.append(
            f"<tr><td>{e.id}</td><td>{_fmt(e.cycle)}</td><td>{_fmt(names.get(e.model_id or -1))}"
            f"</td><td>{_fmt(e.strategy)}</td><td>{_fmt(e.objective)}</td>"
            f"<td class={cls}>{decision}</td><td>{_fmt(st.get('before'))} → "
            f"{_fmt(st.get('after'))}</td><td>{_fmt(st.get('test_before'))} → "
            f"{_fmt(st.get('test_after'))}</td><td>{_fmt(st.get('p_value'), 2)}</td>"
            f"<td>{html.escape(e.reason)}</td></tr>"
        )
    if not rows:
        return "<p class=muted>No experiments yet.</p>"
    return (
        "<table><tr><th>id</th><th>cycle</th><th>model</th><th>strategy</th>"
        "<th>objective</th><th>decision</th><th>validation</th><th>test (reported)</th>"
        "<th>p</th><th>reason</th></tr>" + "".join(rows) + "</table>"
    )


def _health(si: SelfImprover) -> str:
    from selfimprove.loop.system import health_report

    h = health_report(si.store)
    cards = "".join(
        f"<div class=card><span class=muted>{html.escape(k.replace('_', ' '))}</span>"
        f"<b>{_fmt(v, 3)}</b></div>"
        for k, v in h.items()
    )
    return f"<div class=cards>{cards}</div>"


def _engine(si: SelfImprover) -> str:
    """The engine's open weaknesses (read from the ledger, nothing written) and its grade."""
    from selfimprove.engine import SelfImprovementEngine
    from selfimprove.store import WeaknessStatus

    names = {c.id: c.name for c in si.store.list_capabilities()}
    weaknesses = si.store.list_weaknesses(
        statuses=(WeaknessStatus.OPEN, WeaknessStatus.IN_PROGRESS)
    )
    rows = "".join(
        f"<tr><td>{_fmt(w.name)}</td><td>{_fmt(names.get(w.capability_id or -1))}</td>"
        f"<td>{_fmt(w.type)}</td><td>{_fmt(w.severity)}</td><td>{_fmt(w.gap, 3)}</td>"
        f"<td>{_fmt(w.status.value)}</td></tr>"
        for w in weaknesses
    )
    # The engine works over this very store (no second connection pool) and, having been
    # given it, leaves it open when closed.
    engine = SelfImprovementEngine(store=si.store, home=si.home)
    try:
        a = engine.get_self_assessment()
    finally:
        engine.close()
    c = a.components
    counted = (
        f" = 0.6 × {c['exceeded']}/{c['with_expectation']} experiments reached their "
        f"expectation ({c.get('engine_exceeded', 0)}/{c.get('engine', 0)} of the engine's, "
        f"{c.get('judged_promoted', 0)}/{c.get('judged', 0)} of the neural system's promoted) "
        f"+ 0.4 × {c['resolved']}/{c['weaknesses']} weaknesses resolved"
    )
    return (
        f"<p>Self-assessment: grade <b>{html.escape(a.grade)}</b>, learning quality "
        f"{_fmt(a.learning_quality_score, 3)}{counted}</p>"
        + (
            "<table><tr><th>weakness</th><th>capability</th><th>type</th><th>severity</th>"
            f"<th>gap</th><th>status</th></tr>{rows}</table>"
            if rows
            else "<p class=muted>No open weaknesses.</p>"
        )
    )


def render_dashboard(si: SelfImprover) -> str:
    """The whole dashboard as one HTML string (plotly.js inlined)."""
    from plotly.offline import get_plotlyjs

    sections = [
        ("Health", _health(si)),
        (
            "Metric trajectories (validation, by cycle; stars: promotions; grey: rejected "
            "candidates; dashed: rollbacks)",
            _trajectories(si),
        ),
        ("Hormones", _hormones(si)),
        ("Genetic triggers", _triggers(si)),
        ("Strategy effectiveness", _strategies(si)),
        ("Experiments (validation decides; test is only reported)", _experiments(si)),
        ("Engine: weaknesses and self-assessment", _engine(si)),
    ]
    body = "".join(f"<h2>{html.escape(t)}</h2>{c}" for t, c in sections)
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        "<title>selfimprove dashboard</title>"
        '<link rel=icon href="data:,">'
        f"<style>{_CSS}</style><script>{get_plotlyjs()}</script></head><body>"
        f"<h1>selfimprove</h1><p class=muted>{html.escape(str(si.home))} · generated "
        f"{utcnow().isoformat(timespec='seconds')}Z</p>{body}</body></html>"
    )
