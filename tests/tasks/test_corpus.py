"""Text from a folder: each text file one document, split by document; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfimprove.errors import ConfigError
from selfimprove.tasks.corpus import ByteTokenizer, load_corpus, tokenize_corpus


def _write_folder(root: Path, n: int = 12) -> dict[str, str]:
    texts = {}
    for i in range(n):
        sub = root / ("notes" if i % 2 else "more/deeper")
        sub.mkdir(parents=True, exist_ok=True)
        text = f"Document {i}. " + f"the {i}th file says something of its own " * 20
        suffix = (".txt", ".md", ".rst")[i % 3]
        (sub / f"doc{i:02d}{suffix}").write_text(text)
        texts[f"doc{i:02d}"] = text
    (root / "notes" / "image.png").write_bytes(b"\x89PNG not text")  # not a text suffix
    return texts


def test_a_folder_of_text_files_is_split_by_file(tmp_path: Path) -> None:
    texts = _write_folder(tmp_path / "corpus")
    corpus = load_corpus(tmp_path / "corpus")
    splits = [corpus.train, corpus.validation, corpus.test]
    assert all(splits)
    every = [doc for split in splits for doc in split]
    assert sorted(every) == sorted(texts.values())  # each file whole, once, in one split
    assert load_corpus(tmp_path / "corpus").fingerprint == corpus.fingerprint
    assert load_corpus(tmp_path / "corpus", seed=1).fingerprint != corpus.fingerprint
    (tmp_path / "corpus").rename(tmp_path / "moved")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "moved").rename(tmp_path / "elsewhere" / "corpus")
    moved = load_corpus(tmp_path / "elsewhere" / "corpus")  # same folder name, same split
    assert moved.name == "corpus" and moved.fingerprint == corpus.fingerprint
    data = tokenize_corpus(corpus, ByteTokenizer())
    assert data.windows("validation", 32).shape[1] == 33


def test_a_folder_without_text_files_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "a.png").write_bytes(b"\x89PNG")
    with pytest.raises(ConfigError, match=r"holds no text files \(\.txt"):
        load_corpus(tmp_path / "pictures")


def test_a_folder_with_a_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    _write_folder(tmp_path / "corpus", n=4)
    (tmp_path / "corpus" / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 10)
    with pytest.raises(ConfigError, match=r"latin1\.txt is not UTF-8 text"):
        load_corpus(tmp_path / "corpus")


def test_a_folder_saved_by_datasets_needs_the_datasets_package(tmp_path: Path) -> None:
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "dataset_info.json").write_text("{}")
    (folder / "state.json").write_text("{}")
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install datasets"):
            load_corpus(folder)
    else:  # a folder without the arrow files is refused in one line
        with pytest.raises(ConfigError, match="cannot load dataset folder"):
            load_corpus(folder)
