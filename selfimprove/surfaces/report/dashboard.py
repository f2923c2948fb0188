"""The dashboard: one self-contained HTML page (plotly with its JavaScript inlined; no network).

Sections, all drawn from the store:

- metric trajectories per model (validation value of the primary objective at every
  observation), promotions and rollbacks marked;
- hormone levels per cycle;
- genetic triggers: rule, fitness, times boosted, active now;
- strategy effectiveness: experiments, promotions and mean realised gain per strategy, and the
  bandit's posterior means;
- the experiment table with decisions, p-values and test figures;
- health (formulas in ``docs/architecture.md``);
- the engine's weaknesses and self-assessment grade, when the engine has written any.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from typing import Any

from selfimprove.loop.improver import SelfImprover
from selfimprove.store import Decision, utcnow

__all__ = ["render_dashboard"]

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


def _trajectories(si: SelfImprover) -> str:
    import plotly.graph_objects as go

    store = si.store
    parts = []
    for model in store.list_models():
        caps = [c for c in store.list_capabilities(model.id) if c.objective]
        if not caps:
            continue
        primary = caps[0]
        points = store.list_measurements(primary.id, split="validation")
        if not points:
            continue
        versions = {v.id: v.number for v in store.list_versions(model.id)}
        fig = go.Figure()
        fig.add_trace(
            go.Scatter(
                x=[p.measured_at for p in points],
                y=[p.value for p in points],
                mode="lines+markers",
                name=f"{primary.objective} (validation)",
                text=[f"v{versions.get(p.version_id or -1, '?')}" for p in points],
            )
        )
        promoted = [p for p in points if p.context.get("role") == "promoted"]
        if promoted:
            fig.add_trace(
                go.Scatter(
                    x=[p.measured_at for p in promoted],
                    y=[p.value for p in promoted],
                    mode="markers",
                    name="promotion",
                    marker={"symbol": "star", "size": 13, "color": "#1a7f37"},
                )
            )
        for ev in store.list_events(kind="rollback", model_id=model.id):
            fig.add_vline(x=ev.created_at, line_dash="dash", line_color="#cf222e")
        if primary.target is not None:
            fig.add_hline(
                y=primary.target, line_dash="dot", line_color="#57606a", annotation_text="target"
            )
        fig.update_layout(
            title=f"{model.name} — {primary.objective}",
            height=300,
            margin={"l": 40, "r": 10, "t": 40, "b": 30},
        )
        parts.append(_fig_html(fig))
    return "".join(parts) or "<p class=muted>No measurements yet.</p>"


def _hormones(si: SelfImprover) -> str:
    import plotly.graph_objects as go

    rows = si.store.list_cycle_metrics()
    if not rows:
        return "<p class=muted>No cycles of the system yet.</p>"
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
    fig.update_layout(
        title="Hormone levels after each cycle",
        xaxis_title="cycle",
        yaxis_range=[0, 1],
        height=300,
        margin={"l": 40, "r": 10, "t": 40, "b": 40},
    )
    return _fig_html(fig)


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
    return (
        f"<p>Self-assessment: grade <b>{html.escape(a.grade)}</b>, learning quality "
        f"{_fmt(a.learning_quality_score, 3)}</p>"
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
            "Metric trajectories (validation; stars: promotions; dashed: rollbacks)",
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
