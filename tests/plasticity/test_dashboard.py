"""The dashboard opens in a real headless Chromium with no console errors and is not blank."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfimprove.plasticity import AdaptivePlasticitySystem

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
