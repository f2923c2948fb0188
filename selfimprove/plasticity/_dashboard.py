"""The HTML dashboard of a plasticity run: one self-contained page, no network.

Built from the run folder alone (``metrics.jsonl``, ``summary.json``), so any finished run can be
drawn again later (``selfimprove plasticity visualize --results_dir DIR --dashboard``). plotly's
JavaScript is inlined once (``include_plotlyjs=True`` for the first figure, ``False`` after), so
the page opens offline.

Sections:

- head importance heatmaps, one row per cycle: the estimator the cycle used and the gradient
  importance (Michel et al.) of the model before pruning, layers x head slots (a slot is a head's
  identity: it survives the renumbering that removal causes; a regrown head takes a pruned
  slot back). When the cycle's estimator is the gradient importance it is drawn once. Each
  marked slot has one marker: a cross for a head pruned in that cycle, a circle for a head
  grown (filled: into a slot pruned earlier, open: a new slot), a crossed circle for a slot
  pruned and regrown fresh in the same cycle;
- per-cycle metrics: validation perplexity after pruning, growth and learning against the
  acceptance limit; heads and parameters; latency before and after; degeneration with its
  thresholds; efficiency (higher is better);
- strategy effectiveness: mean reward and number of outcomes of every pruning estimator and
  growth placement;
- a table of the cycles with their decisions and reasons.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from selfimprove.errors import ConfigError
from selfimprove.plasticity._degeneration import DEGENERATE, HEALTHY
from selfimprove.plasticity._metrics import read_metrics

__all__ = ["DASHBOARD_FILE", "build_dashboard"]

DASHBOARD_FILE = "dashboard.html"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
.kpi { display: inline-block; margin: 6px 18px 6px 0; padding: 8px 12px; background: #f3f5f8;
       border-radius: 6px; } .ok { color: #17803d; } .bad { color: #b42318; }
"""


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        raise ConfigError(
            "the dashboard needs plotly; install it with pip install 'selfimprove[dashboard]'."
        ) from None
    return go, make_subplots


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _grid(slots: list[list[int]], scores: list[list[float]]) -> list[list[float | None]]:
    width = 1 + max((s for layer in slots for s in layer), default=0)
    z: list[list[float | None]] = [[None] * width for _ in slots]
    for layer, (layer_slots, layer_scores) in enumerate(zip(slots, scores, strict=True)):
        for slot, score in zip(layer_slots, layer_scores, strict=True):
            z[layer][slot] = score
    return z


#: How a marked head slot is drawn: (legend name, plotly marker). One marker per slot, so a
#: head pruned and grown back in the same cycle is one symbol, not two stacked ones.
_MARKS: dict[str, tuple[str, dict[str, Any]]] = {
    "pruned": ("pruned", {"symbol": "x", "size": 12, "color": "#d62728"}),
    "replaced": (
        "pruned, then regrown fresh in the same slot",
        {
            "symbol": "circle-x",
            "size": 15,
            "color": "#ff7f0e",
            "line": {"width": 2, "color": "#d62728"},
        },
    ),
    "regrown": (
        "grown into a slot pruned earlier",
        {
            "symbol": "circle",
            "size": 14,
            "color": "#ff7f0e",
            "line": {"width": 2, "color": "#ff7f0e"},
        },
    ),
    "new": (
        "grown into a new slot",
        {
            "symbol": "circle-open",
            "size": 14,
            "color": "#ff7f0e",
            "line": {"width": 2, "color": "#ff7f0e"},
        },
    ),
}


def _marks(prune: dict[str, Any], grow: dict[str, Any]) -> dict[str, list[tuple[int, int]]]:
    """The marked ``(layer, slot)`` cells of one cycle, by kind (see :data:`_MARKS`)."""
    pruned = {(int(p[0]), int(p[1])) for p in prune.get("pruned", [])}
    out: dict[str, list[tuple[int, int]]] = {kind: [] for kind in _MARKS}
    for g in grow.get("grown", []):
        cell = (int(g[0]), int(g[1]))
        if cell in pruned:
            out["replaced"].append(cell)
            pruned.discard(cell)
        else:
            out["regrown" if g[2] else "new"].append(cell)
    out["pruned"] = sorted(pruned)
    return out


def _heatmaps(go: Any, make_subplots: Any, records: list[dict[str, Any]]) -> Any | None:
    # A cycle whose larger candidates were forecast to fail pruned more than once: the
    # candidate it fine-tuned is the last.
    prunes = list({r["cycle"]: r for r in records if r["phase"] == "prune"}.values())
    if not prunes:
        return None
    grows = {r["cycle"]: r for r in records if r["phase"] == "grow"}
    decisions = {r["cycle"]: r for r in records if r["phase"] == "decision"}
    titles: list[str] = []
    specs: list[list[dict[str, Any] | None]] = []
    for r in prunes:
        d = decisions.get(r["cycle"], {})
        verdict = "accepted" if d.get("accepted") else "rejected"
        method = r["importance"]["method"]
        if method == "gradient":  # the estimator is the gradient importance: draw it once
            titles += [f"cycle {r['cycle']} ({verdict}): gradient importance (the estimator)"]
            specs.append([{}, None])
        else:
            titles += [
                f"cycle {r['cycle']} ({verdict}): {method} importance",
                f"cycle {r['cycle']}: gradient importance",
            ]
            specs.append([{}, {}])
    fig = make_subplots(
        rows=len(prunes),
        cols=2,
        specs=specs,
        subplot_titles=titles,
        vertical_spacing=0.3 / len(prunes),
    )
    in_legend: set[str] = set()
    for i, (r, row_specs) in enumerate(zip(prunes, specs, strict=True), start=1):
        slots = r["slots"]
        n_layers = len(slots)
        marks = _marks(r, grows.get(r["cycle"], {}))
        maps = [r["importance"]["scores"], r["gradient"]][: sum(s is not None for s in row_specs)]
        for col, scores in enumerate(maps, start=1):
            z = _grid(slots, scores)
            fig.add_trace(
                go.Heatmap(
                    z=z,
                    x=list(range(len(z[0]))),
                    y=[f"L{layer}" for layer in range(n_layers)],
                    colorscale="Viridis",
                    showscale=(i == 1 and col == 1),
                    hovertemplate="layer %{y} slot %{x}: %{z:.3f}<extra></extra>",
                ),
                row=i,
                col=col,
            )
            for kind, cells in marks.items():
                if not cells:
                    continue
                name, marker = _MARKS[kind]
                fig.add_trace(
                    go.Scatter(
                        x=[slot for _, slot in cells],
                        y=[f"L{layer}" for layer, _ in cells],
                        mode="markers",
                        marker=marker,
                        name=name,
                        legendgroup=kind,
                        showlegend=kind not in in_legend,
                        hovertemplate=f"{name}: layer %{{y}} slot %{{x}}<extra></extra>",
                    ),
                    row=i,
                    col=col,
                )
                in_legend.add(kind)
    fig.update_layout(
        height=260 * len(prunes) + 120,
        title=(
            "Head importance before pruning, per-layer L2-normalised "
            "(marks: heads pruned and grown this cycle)"
        ),
        legend={"orientation": "h", "x": 0, "y": 0, "yanchor": "bottom", "yref": "container"},
        margin={"t": 90, "b": 70},
    )
    fig.update_xaxes(dtick=1)
    fig.update_xaxes(title_text="head slot", row=len(prunes))
    return fig


def _metrics_figure(go: Any, make_subplots: Any, records: list[dict[str, Any]]) -> Any | None:
    by = {(r["cycle"], r["phase"]): r for r in records}
    cycles = sorted({r["cycle"] for r in records if r["phase"] == "learn"})
    if not cycles:
        return None
    base = by.get((0, "baseline"), {})
    decisions = [by.get((c, "decision"), {}) for c in cycles]
    accepted = [bool(d.get("accepted")) for d in decisions]
    colours = ["#17803d" if a else "#b42318" for a in accepted]
    fig = make_subplots(
        rows=2,
        cols=3,
        subplot_titles=(
            "validation perplexity",
            "heads (after each cycle's decision)",
            "parameters",
            "latency (ms, median, interleaved)",
            "degeneration score",
            "efficiency (higher is better)",
        ),
    )

    def line(name: str, ys: list[Any], row: int, col: int, **kw: Any) -> None:
        fig.add_trace(go.Scatter(x=cycles, y=ys, name=name, mode="lines+markers", **kw), row, col)

    ppl = {
        ph: [by.get((c, ph), {}).get("perplexity") for c in cycles]
        for ph in ("measure", "grow", "learn")
    }
    if all(
        a is None or b is None or math.isclose(a, b, rel_tol=1e-3)
        for a, b in zip(ppl["measure"], ppl["grow"], strict=True)
    ):  # grown heads start silent: one line, not two drawn on top of each other
        line("after pruning and growth (equal: grown heads start silent)", ppl["measure"], 1, 1)
    else:
        line("after pruning", ppl["measure"], 1, 1)
        line("after growth", ppl["grow"], 1, 1, line={"dash": "dot"})
    fig.add_trace(
        go.Scatter(
            x=cycles,
            y=ppl["learn"],
            name="after learning (green: accepted, red: rejected)",
            mode="lines+markers",
            marker={"color": colours, "size": 11},
        ),
        1,
        1,
    )
    start_ppl = base.get("perplexity")
    if start_ppl:
        line("start", [start_ppl] * len(cycles), 1, 1, line={"color": "#888"})
    with_start = [0, *cycles]
    kept = {"color": ["#888", *colours]}
    fig.add_trace(
        go.Scatter(
            x=with_start,
            y=[base.get("heads")] + [d.get("heads") for d in decisions],
            name="heads",
            mode="lines+markers",
            marker=kept,
        ),
        1,
        2,
    )
    fig.add_trace(
        go.Scatter(
            x=with_start,
            y=[base.get("parameters")] + [d.get("parameters") for d in decisions],
            name="parameters",
            mode="lines+markers",
            marker=kept,
        ),
        1,
        3,
    )
    learn = [by.get((c, "learn"), {}) for c in cycles]
    line("batch 1, before cycle", [r.get("latency_before_ms") for r in learn], 2, 1)
    line("batch 1, candidate", [r.get("latency_ms") for r in learn], 2, 1)
    line("serving batch, before", [r.get("serving_latency_before_ms") for r in learn], 2, 1)
    line("serving batch, candidate", [r.get("serving_latency_ms") for r in learn], 2, 1)
    line("degeneration", [r.get("degeneration") for r in learn], 2, 2)
    line("healthy limit", [HEALTHY] * len(cycles), 2, 2, line={"dash": "dot", "color": "#17803d"})
    line(
        "degenerate above",
        [DEGENERATE] * len(cycles),
        2,
        2,
        line={"dash": "dot", "color": "#b42318"},
    )
    line("efficiency", [r.get("efficiency") for r in learn], 2, 3)
    fig.update_layout(
        height=720, title="Per-cycle metrics", legend={"orientation": "h", "y": -0.12}
    )
    fig.update_xaxes(title_text="cycle", dtick=1)
    return fig


def _strategy_figure(go: Any, make_subplots: Any, records: list[dict[str, Any]]) -> Any | None:
    decisions = [r for r in records if r["phase"] == "decision"]
    if not decisions:
        return None
    ratings = decisions[-1].get("ratings") or {}
    fig = make_subplots(rows=1, cols=2, subplot_titles=("pruning estimators", "growth placements"))
    for col, family in ((1, "pruning"), (2, "growth")):
        table = ratings.get(family, {})
        names = list(table)
        fig.add_trace(
            go.Bar(
                x=names,
                y=[table[n]["mean"] for n in names],
                text=[f"{len(table[n]['rewards'])} outcome(s)" for n in names],
                textposition="outside",
                name=family,
                marker={"color": "#4c78a8" if col == 1 else "#f58518"},
            ),
            1,
            col,
        )
    fig.update_layout(
        height=420,
        title="Strategy effectiveness: mean reward (prior counted as one outcome)",
        showlegend=False,
    )
    fig.update_yaxes(title_text="mean reward")
    return fig


def _cycle_table(records: list[dict[str, Any]]) -> str:
    by = {(r["cycle"], r["phase"]): r for r in records}
    rows = []
    for c in sorted({r["cycle"] for r in records if r["phase"] == "decision"}):
        d, p, g, learn = (by.get((c, ph), {}) for ph in ("decision", "prune", "grow", "learn"))
        verdict = "accepted" if d.get("accepted") else "rejected"
        cells = [
            str(c),
            f"<span class='{'ok' if d.get('accepted') else 'bad'}'>{verdict}</span>",
            html.escape(f"{p.get('strategy')} @ {_fmt(p.get('level'), 3)}"),
            html.escape(f"{g.get('strategy')} x {_fmt(g.get('ratio'), 3)}"),
            html.escape(f"-{len(p.get('pruned', []))} / +{len(g.get('grown', []))}"),
            _fmt(d.get("heads")),
            _fmt(learn.get("perplexity")),
            _fmt(learn.get("degeneration"), 3),
            _fmt(d.get("reward"), 3),
            html.escape(str(d.get("reason", ""))),
            html.escape(str(p.get("choice", ""))),
        ]
        rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    head = (
        "cycle",
        "decision",
        "pruning",
        "growth",
        "heads -/+",
        "heads after",
        "perplexity",
        "degeneration",
        "reward",
        "reason",
        "why this choice",
    )
    return (
        "<table><tr>"
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr>"
        + "".join(rows)
        + "</table>"
    )


def _kpis(summary: dict[str, Any]) -> str:
    start, final = summary.get("start", {}), summary.get("final", {})
    ref = summary.get("reference") or {}
    items = [
        ("heads", f"{_fmt(start.get('heads'))} → {_fmt(final.get('heads'))}"),
        ("parameters", f"{_fmt(start.get('parameters'))} → {_fmt(final.get('parameters'))}"),
        (
            "validation perplexity",
            f"{_fmt(start.get('perplexity'))} → {_fmt(final.get('perplexity'))}",
        ),
        (
            "test perplexity (reported only)",
            f"{_fmt(start.get('test_perplexity'))} → {_fmt(final.get('test_perplexity'))}",
        ),
        (
            "latency batch 1 (interleaved)",
            f"{_fmt(final.get('start_latency_ms'))} → {_fmt(final.get('latency_ms'))} ms",
        ),
        (
            f"latency batch {_fmt(final.get('serving_batch'))} (interleaved)",
            f"{_fmt(final.get('start_serving_latency_ms'))} → "
            f"{_fmt(final.get('serving_latency_ms'))} ms",
        ),
        (
            "degeneration",
            f"{_fmt(start.get('degeneration'), 3)} → {_fmt(final.get('degeneration'), 3)}",
        ),
        ("efficiency", _fmt(final.get("efficiency"), 3)),
    ]
    if ref:
        items.append(
            (
                "vs unpruned model fine-tuned the same steps",
                f"perplexity {_fmt(ref.get('perplexity'))} (final / reference "
                f"{_fmt(ref.get('final_vs_reference'), 4)})",
            )
        )
    return "".join(
        f"<div class='kpi'><b>{html.escape(k)}</b><br>{html.escape(v)}</div>" for k, v in items
    )


def build_dashboard(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the dashboard of a run folder.

    Args:
        run_dir: A run folder (``run_YYYYmmdd-HHMMSS``) with ``metrics.jsonl``.
        out: Output file (default ``<run_dir>/dashboard.html``).

    Returns:
        The HTML file.

    Raises:
        ConfigError: No metrics in ``run_dir``, plotly missing, or an unwritable output.
    """
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    go, make_subplots = _plotly()
    summary: dict[str, Any] = {}
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
        except json.JSONDecodeError:
            summary = {}
    figures = [
        ("Head importance and structure", _heatmaps(go, make_subplots, records)),
        ("Per-cycle metrics", _metrics_figure(go, make_subplots, records)),
        ("Strategy effectiveness", _strategy_figure(go, make_subplots, records)),
    ]
    parts = []
    first = True
    for title, fig in figures:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if fig is None:
            parts.append("<p>No cycle ran, so there is nothing to draw here.</p>")
            continue
        fig.update_layout(template="plotly_white")
        parts.append(
            fig.to_html(
                full_html=False,
                include_plotlyjs=first,
                config={"displaylogo": False, "responsive": True},
            )
        )
        first = False
    name = html.escape(summary.get("model_name", "") or "")
    dataset = html.escape(summary.get("dataset", "") or "")
    stopped = html.escape(summary.get("stopped", "") or "")
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Plasticity run {html.escape(run_dir.name)}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>Adaptive neural plasticity — {html.escape(run_dir.name)}</h1>"
        f"<p>model <b>{name}</b> · data <b>{dataset}</b> · stopped: {stopped or '—'}. "
        "Validation decides every cycle; the test split is only reported.</p>"
        f"{_kpis(summary)}"
        + "".join(parts)
        + "<h2>Cycles</h2>"
        + _cycle_table(records)
        + "</body></html>"
    )
    target = Path(out) if out is not None else run_dir / DASHBOARD_FILE
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the dashboard to {target}: {exc.strerror}.") from None
    return target
