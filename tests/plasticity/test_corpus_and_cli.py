"""Corpus splits, offline-only loading, the tiny cache, and the ``plasticity`` CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from selfimprove.errors import NotFoundError
from selfimprove.plasticity import (
    AdaptivePlasticitySystem,
    ByteTokenizer,
    heads_per_layer,
    load_corpus,
    load_tiny,
    tiny_cache_dir,
    tokenize_corpus,
)
from selfimprove.surfaces.cli.plasticity import _run_checks, _surgery_checks, app

from .conftest import TEST_TINY

runner = CliRunner()


def test_builtin_corpus_is_split_by_document_without_overlap() -> None:
    corpus = load_corpus("pydoc")
    sizes = corpus.sizes()
    assert sizes["validation"] >= 0.1 * sum(sizes.values()) * 0.99
    assert sizes["test"] >= 0.1 * sum(sizes.values()) * 0.99
    splits = [set(corpus.train), set(corpus.validation), set(corpus.test)]
    assert not (splits[0] & splits[1]) and not (splits[0] & splits[2])
    assert not (splits[1] & splits[2])
    assert load_corpus("pydoc").fingerprint == corpus.fingerprint  # same split every time


def test_local_text_file_is_a_dataset(tmp_path: Path) -> None:
    text = "\n\n".join(f"Paragraph {i}. " + "words and more words " * 30 for i in range(40))
    path = tmp_path / "notes.txt"
    path.write_text(text)
    corpus = load_corpus(path)
    data = tokenize_corpus(corpus, ByteTokenizer())
    assert len(corpus.train) >= 1 and len(corpus.validation) >= 1 and len(corpus.test) >= 1
    assert data.windows("validation", 32).shape[1] == 33


def test_hub_names_fail_offline_with_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NotFoundError, match=r"available offline.*--dataset pydoc"):
        load_corpus("wikitext")
    with pytest.raises(NotFoundError, match="does not exist"):
        load_corpus("./missing/notes.txt")
    system = AdaptivePlasticitySystem("distilgpt2", None, tmp_path / "out", home=tmp_path)
    with pytest.raises(NotFoundError, match=r"not available offline.*tiny"):
        system.setup()


def test_a_saved_gpt2_folder_loads_offline(
    tiny: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tiny.save_pretrained(tmp_path / "my_gpt2")
    system = AdaptivePlasticitySystem(str(tmp_path / "my_gpt2"), None, tmp_path / "out")
    system.setup()
    assert heads_per_layer(system.model_) == [8, 8, 8, 8]
    assert isinstance(system.tokenizer_, ByteTokenizer)  # vocabulary 256, no tokenizer files
    x = system.val_[:2, :-1]
    with torch.no_grad():
        torch.testing.assert_close(
            system.model_(input_ids=x).logits, tiny(input_ids=x).logits, rtol=0, atol=0
        )


def test_tiny_is_cached_once_per_machine(tiny_home: Path, _tiny_cached: object) -> None:
    t0 = time.perf_counter()
    again = load_tiny(TEST_TINY, home=tiny_home)
    assert time.perf_counter() - t0 < 5.0  # loaded, not pre-trained again
    folders = [
        f
        for f in tiny_cache_dir().iterdir()  # the session's $SELFIMPROVE_CACHE (tests/conftest)
        if not f.name.startswith(".")  # a staging folder of a pre-training under way
        and json.loads((f / "model.json").read_text())["tiny_spec"] == TEST_TINY.to_dict()
    ]
    assert len(folders) == 1
    assert {p.name for p in folders[0].iterdir()} == {"model.safetensors", "model.json"}
    assert not (tiny_home / "plasticity" / "tiny").exists()
    for (k, a), (_, b) in zip(
        again.state_dict().items(),
        _tiny_cached.state_dict().items(),  # type: ignore[attr-defined]
        strict=True,
    ):
        assert a.equal(b), k


def test_cli_errors_are_one_line_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = runner.invoke(
        app,
        [
            "run",
            "--model_name",
            "distilgpt2",
            "--home",
            str(tmp_path),
            "--output_dir",
            str(tmp_path / "out"),
        ],
    )
    assert res.exit_code == 2
    assert "not available offline" in res.output and "tiny" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["visualize", "--results_dir", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "metrics.jsonl" in res.output
    res = runner.invoke(
        app,
        [
            "run",
            "--dataset",
            "wikitext",
            "--home",
            str(tmp_path),
            "--output_dir",
            str(tmp_path / "out"),
        ],
    )
    assert res.exit_code == 2 and "pydoc" in res.output


def test_cli_visualize_writes_the_dashboard_of_a_run(
    short_run: AdaptivePlasticitySystem, tmp_path: Path
) -> None:
    out = tmp_path / "again.html"
    res = runner.invoke(
        app,
        [
            "visualize",
            "--results_dir",
            str(short_run.results_.run_dir),
            "--dashboard",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "accepted" in res.output or "rejected" in res.output
    assert out.stat().st_size > 1_000_000


def test_every_command_has_help_with_an_example() -> None:
    for cmd in ("run", "test", "visualize"):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and "Example:" in res.output, cmd


def test_the_self_test_checks_pass_on_a_short_run(
    short_run: AdaptivePlasticitySystem, tiny: torch.nn.Module
) -> None:
    x = short_run.val_[:2, :-1]  # (2, T)
    checks = _surgery_checks(tiny, x, seed=0) + _run_checks(short_run, short_run.config, x)
    assert [name for name, _, _ in checks] == [
        "gated logits = pruned logits",
        "growth keeps the logits",
        "perplexity within tolerance",
        "degeneration below threshold",
        "heads not more",
        "final checkpoint reloads exactly",
    ]
    assert all(passed for _, passed, _ in checks), checks
