"""benchmarks/head_pruning in smoke mode: both corpora, the growth ablation, issue 18's targets."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import head_pruning
from benchmarks._common import setup


def test_the_head_pruning_runner_reports_both_corpora_and_the_growth_ablation(
    tmp_path: Path,
) -> None:
    setup()
    cfg = head_pruning.Config.for_mode("smoke")
    argv = ["benchmarks.head_pruning", "--mode", "smoke"]
    path = head_pruning.run(cfg, argv, tmp_path / "out", tmp_path / "work", tmp_path / "cache")
    data = json.loads(path.read_text())
    assert set(data["results"]["per_corpus"]) == set(head_pruning.CORPORA)
    docs = data["results"]["corpora"]["stdlib-docstrings"]
    assert docs["name"] == head_pruning.CORPUS_FOLDER.name and min(docs["documents"]) >= 1
    for corpus, seeds in data["results"]["per_corpus"].items():
        seed = seeds["0"]
        a, b = seed["adaptive"], seed["adaptive_growth_ablation"]
        assert (a["growth_ratio"], b["growth_ratio"]) == (0.0, 0.5)
        for cycle in a["cycles"]:
            assert cycle["reference_perplexity"] is not None  # judged against the reference
        assert a["minus_best_fixed"] == a["increase_vs_reference"] - min(
            a["fixed_at_same_fraction"].values()
        )
        titles = [t["title"] for t in data["tables"] if t["title"].startswith(f"{corpus}:")]
        assert len(titles) == 3, titles
    targets = [t["target"] for t in data["targets"]]
    for corpus in head_pruning.CORPORA:
        assert any(t.startswith(f"{corpus}: adaptive ≥ 50 %") for t in targets)
        assert any(t.startswith(f"{corpus}: adaptive − best fixed") for t in targets)
    assert all(t["met"] is None for t in data["targets"])  # smoke: a smaller model stands in
    assert any(n.startswith("Growth, measured:") for n in data["notes"])
