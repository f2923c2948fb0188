"""The dashboard opens in a real headless Chromium with no console errors and is not blank."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from selfimprove.plasticity import AdaptivePlasticitySystem
from selfimprove.plasticity._dashboard import _heatmaps, _plotly
from selfimprove.plasticity._metrics import read_metrics

from ._browser import chromium_path, open_page, png_colours

needs_chromium = pytest.mark.skipif(
    chromium_path() is None,
    reason="chromium is not installed (Debian: apt-get install -y chromium); browser test skipped",
)


def test_dashboard_is_self_contained(short_run: AdaptivePlasticitySystem) -> None:
    page = (short_run.results_.run_dir / "dashboard.html").read_text()
    assert "<script src=" not in page and "cdn.plot.ly/plotly" not in page  # plotly.js inlined
    for needle in ("Head importance", "gradient importance", "pruned", "grown", "Strategy"):
        assert needle in page, needle


@needs_chromium
def test_dashboard_opens_in_headless_chromium_without_errors(
    short_run: AdaptivePlasticitySystem, tmp_path: Path
) -> None:
    report = open_page(short_run.results_.run_dir / "dashboard.html", tmp_path / "profile")
    _pixels, colours, top_share = png_colours(report.png)
    (tmp_path / "dashboard.png").write_bytes(report.png)
    print(f"\nchromium: {report.plots} plots, {colours} colours, top colour {top_share:.1%}")
    assert report.errors == []
    assert report.plots >= 3  # heatmaps, metrics, strategies
    assert colours > 200 and top_share < 0.95


@needs_chromium
def test_the_browser_check_catches_errors_and_blank_pages(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<html><body><script>console.error('boom'); missingFunction();</script></body></html>"
    )
    report = open_page(bad, tmp_path / "profile", settle_s=0.1)
    _, _colours, top_share = png_colours(report.png)
    assert any("boom" in e for e in report.errors)
    assert any("missingFunction" in e for e in report.errors)
    assert top_share > 0.99  # a blank page fails the "not blank" check


def _heatmap_records() -> list[dict[str, Any]]:
    """Two cycles of metrics records: one ranked by activation, one by the gradient; in both a
    head is pruned and a fresh one grown back into the same slot."""
    slots = [[0, 1, 2, 3], [0, 1, 2, 3]]
    scores = [[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]]
    records: list[dict[str, Any]] = []
    for cycle, method in ((1, "activation"), (2, "gradient")):
        importance = scores if method == "gradient" else [[0.5] * 4, [0.5] * 4]
        records += [
            {
                "cycle": cycle,
                "phase": "prune",
                "slots": slots,
                "importance": {"method": method, "scores": importance},
                "gradient": scores,
                "pruned": [[0, 0], [1, 3]],
            },
            {"cycle": cycle, "phase": "grow", "grown": [[0, 0, 1], [1, 2, 0]]},
            {"cycle": cycle, "phase": "decision", "accepted": True},
        ]
    return records


def test_heatmaps_draw_the_gradient_once_and_one_marker_per_slot() -> None:
    go, make_subplots = _plotly()
    fig = _heatmaps(go, make_subplots, _heatmap_records())
    assert fig is not None
    maps = [t for t in fig.data if t.type == "heatmap"]
    assert len(maps) == 3  # cycle 1: activation + gradient; cycle 2: the gradient once
    titles = [a.text for a in fig.layout.annotations]
    assert sum("gradient importance" in t for t in titles) == 2
    # every subplot marks each slot once: pruned-and-regrown is one symbol, not two
    per_axes: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for t in fig.data:
        if t.type == "scatter":
            per_axes.setdefault((t.xaxis, t.yaxis), []).extend(zip(t.x, t.y, strict=True))
    assert len(per_axes) == 3
    for cells in per_axes.values():
        assert len(cells) == len(set(cells)) == 3  # (0, L0) replaced, (3, L1) pruned, (2, L1) new
    names = {t.name for t in fig.data if t.type == "scatter" and t.showlegend}
    assert names == {
        "pruned",
        "pruned, then regrown fresh in the same slot",
        "grown into a new slot",
    }


def test_the_real_dashboard_has_one_heatmap_per_distinct_importance(
    short_run: AdaptivePlasticitySystem,
) -> None:
    records = read_metrics(short_run.results_.run_dir)
    go, make_subplots = _plotly()
    fig = _heatmaps(go, make_subplots, records)
    assert fig is not None
    methods = [r["importance"]["method"] for r in records if r["phase"] == "prune"]
    expected = sum(1 if m == "gradient" else 2 for m in methods)
    assert len([t for t in fig.data if t.type == "heatmap"]) == expected
