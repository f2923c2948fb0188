"""``tiny``'s machine-wide cache: shared between homes, keyed by spec and corpus, safe when two
processes pre-train at once, retrained when damaged, and pre-trained on the training split of
the run's own corpus. A very small spec (a few steps) keeps each test to seconds."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from rich.progress import Progress

from selfimprove.plasticity import (
    AdaptivePlasticitySystem,
    Corpus,
    DegenerationConfig,
    TinySpec,
    load_corpus,
    load_tiny,
    tiny_cache_dir,
)
from selfimprove.surfaces.cli.plasticity import _Bars

from .conftest import short_config

SPEC = TinySpec(n_layer=1, n_head=2, n_embd=16, context=16, steps=4, batch_size=2)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own machine-wide cache folder (``$SELFIMPROVE_CACHE``)."""
    monkeypatch.setenv("SELFIMPROVE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def _entries(root: Path) -> list[Path]:
    return sorted(root.iterdir()) if root.exists() else []


def _notes(tmp_path: Path, name: str, word: str) -> Path:
    path = tmp_path / name
    path.write_text(
        "\n\n".join(f"Note {i}. " + f"{word} and more {word} " * 120 for i in range(12))
    )
    return path


def test_two_homes_share_one_cache_entry(tmp_path: Path, cache: Path) -> None:
    steps: list[tuple[int, int, float]] = []
    folders: list[Path] = []
    first = load_tiny(
        SPEC,
        home=tmp_path / "a",
        progress=lambda s, n, loss: steps.append((s, n, loss)),
        on_pretrain=folders.append,
    )
    assert [s for s, _, _ in steps] == [1, 2, 3, 4] and folders == _entries(cache / "tiny")
    again: list[object] = []
    second = load_tiny(
        SPEC,
        home=tmp_path / "b",
        progress=lambda *a: again.append(a),
        on_pretrain=again.append,
    )
    assert again == []  # loaded, not pre-trained again
    assert _digest(second) == _digest(first)
    [entry] = _entries(cache / "tiny")
    assert {p.name for p in entry.iterdir()} == {"model.safetensors", "model.json"}
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # homes untouched


def test_the_cache_folder_is_the_variable_else_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SELFIMPROVE_CACHE", str(tmp_path / "mine"))
    assert tiny_cache_dir() == tmp_path / "mine" / "tiny"
    load_tiny(SPEC, home=tmp_path / "home")
    assert len(_entries(tmp_path / "mine" / "tiny")) == 1
    monkeypatch.delenv("SELFIMPROVE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr("sys.platform", "linux")
    assert tiny_cache_dir() == tmp_path / "xdg" / "selfimprove" / "tiny"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # invalid by the XDG spec: ignored
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert tiny_cache_dir() == tmp_path / "user" / ".cache" / "selfimprove" / "tiny"


def test_each_corpus_has_its_own_entry(tmp_path: Path, cache: Path) -> None:
    pydoc = load_tiny(SPEC, home=tmp_path)
    notes = load_corpus(_notes(tmp_path, "notes.txt", "plasticity"))
    mine = load_tiny(SPEC, corpus=notes, home=tmp_path)
    entries = _entries(cache / "tiny")
    assert len(entries) == 2 and _digest(mine) != _digest(pydoc)
    manifests = [json.loads((e / "model.json").read_text()) for e in entries]
    assert sorted(m["corpus"] for m in manifests) == sorted(["pydoc", notes.name])
    assert all(m["pretrain_split"] == "train" for m in manifests)
    assert {m["corpus_sha256"] for m in manifests} == {notes.fingerprint, load_corpus().fingerprint}


def test_pretraining_reads_the_training_split_alone(tmp_path: Path, monkeypatch: Any) -> None:
    # Same training documents, other validation and test text: the same weights, so nothing
    # a plasticity cycle measures on reaches the pre-training.
    corpus = load_corpus(_notes(tmp_path, "notes.txt", "grow"))
    other = Corpus(
        corpus.name,
        corpus.train,
        ("another validation text " * 50,),
        ("another test text " * 50,),
        "0" * 64,
    )
    monkeypatch.setenv("SELFIMPROVE_CACHE", str(tmp_path / "one"))
    a = load_tiny(SPEC, corpus=corpus, home=tmp_path)
    monkeypatch.setenv("SELFIMPROVE_CACHE", str(tmp_path / "two"))
    b = load_tiny(SPEC, corpus=other, home=tmp_path)
    assert _digest(a) == _digest(b)


def test_a_run_pretrains_on_its_own_dataset_with_progress(tmp_path: Path, cache: Path) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    system = AdaptivePlasticitySystem(
        "tiny",
        _notes(tmp_path, "notes.txt", "prune"),
        tmp_path / "out",
        config=short_config(
            tiny=SPEC,
            context=16,
            degeneration=DegenerationConfig(prompts=2, prompt_tokens=4, new_tokens=8),
        ),
        home=tmp_path / "home",
        progress=lambda event, data: events.append((event, data)),
    )
    system.setup()
    [entry] = _entries(cache / "tiny")
    manifest = json.loads((entry / "model.json").read_text())
    assert manifest["corpus_sha256"] == system.corpus_.fingerprint  # the run's own split
    pretrain = [data for event, data in events if event == "pretrain"]
    assert [d["step"] for d in pretrain] == [1, 2, 3, 4]
    assert all(d["corpus"] == system.corpus_.name and d["folder"] == str(entry) for d in pretrain)


def _race(home: str, barrier: Any, results: Any) -> None:
    """One of two processes that miss the cache together, then both pre-train and publish."""
    torch.set_num_threads(1)
    seen: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    log = logging.getLogger("selfimprove.plasticity._tiny")
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    model = load_tiny(SPEC, home=home, on_pretrain=lambda _: barrier.wait(timeout=120))
    lost = any(line.startswith("loaded tiny from") for line in seen)  # the winner's, after ours
    results.put((_digest(model), lost))


def test_two_processes_pretraining_at_once_leave_one_valid_entry(
    tmp_path: Path, cache: Path
) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_race, args=(str(tmp_path / f"home{i}"), barrier, results))
        for i in range(2)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    digests = [digest for digest, _ in outcomes]
    assert digests[0] == digests[1]
    assert sorted(lost for _, lost in outcomes) == [False, True]  # both trained, one rename won
    root = cache / "tiny"
    [entry] = _entries(root)  # no staging folder left behind
    steps: list[int] = []
    model = load_tiny(SPEC, home=tmp_path, progress=lambda s, n, loss: steps.append(s))
    assert steps == [] and _digest(model) == digests[0]
    assert {p.name for p in entry.iterdir()} == {"model.safetensors", "model.json"}


def test_a_damaged_entry_is_trained_again_with_a_warning(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = load_tiny(SPEC, home=tmp_path)
    [entry] = _entries(cache / "tiny")
    weights = entry / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    steps: list[int] = []
    with caplog.at_level(logging.WARNING, logger="selfimprove.plasticity._tiny"):
        again = load_tiny(SPEC, home=tmp_path, progress=lambda s, n, loss: steps.append(s))
    assert steps and "unusable" in caplog.text and "pre-training it again" in caplog.text
    assert _digest(again) == _digest(first)
    # A half-written entry (weights without a manifest) is replaced too.
    (entry / "model.json").unlink()
    steps.clear()
    load_tiny(SPEC, home=tmp_path, progress=lambda s, n, loss: steps.append(s))
    assert steps
    steps.clear()
    assert _digest(load_tiny(SPEC, home=tmp_path, progress=lambda *a: steps.append(1))) == (
        _digest(first)
    )
    assert steps == [] and _entries(cache / "tiny") == [entry]


def test_an_unwritable_cache_falls_back_to_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("SELFIMPROVE_CACHE", str(blocked))
    with caplog.at_level(logging.WARNING, logger="selfimprove.plasticity._tiny"):
        first = load_tiny(SPEC, home=tmp_path / "home")
    assert "cannot write the tiny cache" in caplog.text and "SELFIMPROVE_CACHE" in caplog.text
    [entry] = _entries(tmp_path / "home" / "plasticity" / "tiny")
    steps: list[int] = []
    again = load_tiny(SPEC, home=tmp_path / "home", progress=lambda s, n, loss: steps.append(s))
    assert steps == [] and _digest(again) == _digest(first)
    assert {p.name for p in entry.iterdir()} == {"model.safetensors", "model.json"}


def test_pretraining_progress_is_plain_lines_where_stderr_is_no_terminal() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=False, width=200)
    with Progress(console=console, transient=True) as progress:  # as the CLI draws them
        bars = _Bars(progress, cycles=1)
        for step in range(1, 21):
            bars(
                "pretrain",
                {
                    "step": step,
                    "steps": 20,
                    "loss": 5.0 / step,
                    "corpus": "pydoc",
                    "folder": "/tmp/cache/tiny/0123",
                },
            )
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    assert lines[0] == (
        "pre-training tiny on pydoc (once per machine, cached in /tmp/cache/tiny/0123): "
        "step 1/20 · loss 5.000"
    )
    assert [line.split("step ")[1].split(" ")[0] for line in lines] == [
        f"{s}/20" for s in (1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20)
    ]
