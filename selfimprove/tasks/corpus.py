"""Text corpora split by document, tokenizers, and batches of token windows.

Sources, in the order :func:`load_corpus` tries them:

- ``"pydoc"`` (the default; also ``"builtin"``): the English help topics that ship with
  CPython (``pydoc_data.topics``: 79 topics, fewer distinct documents, about 465 000
  characters), so everything runs offline;
- a path to a local UTF-8 text file: documents are its paragraphs (split at blank lines),
  joined greedily into documents of at least :data:`MIN_DOC_CHARS` characters;
- a folder of text files (:data:`TEXT_SUFFIXES`, searched recursively, in path order): each
  file is one document, so no file is ever split between training and validation;
- a folder saved by 🤗 ``datasets`` (``save_to_disk``: it holds ``dataset_info.json`` or
  ``dataset_dict.json``): read with ``datasets.load_from_disk`` (every split, in name order;
  the ``text`` column, or the only string column), its rows joined like a hub dataset's;
- anything else is taken for a Hugging Face dataset name. It is loaded only if the ``datasets``
  package is installed *and* the data sit in its local cache (``HF_DATASETS_OFFLINE=1``: no
  download is ever attempted); otherwise one clear line says so and suggests ``pydoc``.

Empty and duplicate documents are dropped (``pydoc_data.topics`` files a few texts under two
keys; a copy on each side of a split would leak). Documents (never windows of one document) are
assigned to train / validation / test by a seeded
shuffle, filling validation and then test to at least :data:`HELDOUT_SHARE` of the characters
each, so no text leaks between splits. Validation decides; the test split is only reported.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from selfimprove.errors import ConfigError, NotFoundError
from selfimprove.seeding import numpy_rng

__all__ = [
    "BUILTIN_DATASET",
    "HELDOUT_SHARE",
    "ByteTokenizer",
    "Corpus",
    "HFTokenizer",
    "TokenData",
    "Tokenizer",
    "load_corpus",
    "tokenize_corpus",
]

BUILTIN_DATASET = "pydoc"
#: Share of the characters that validation and test each receive (at least).
HELDOUT_SHARE = 0.1
#: Paragraphs of a local file are joined until a document has at least this many characters.
MIN_DOC_CHARS = 2000
#: Files read from a dataset folder, by suffix.
TEXT_SUFFIXES = (".txt", ".md", ".text", ".rst")
#: Most bytes of text a dataset folder may hold (it is read into memory at once).
MAX_CORPUS_BYTES = 1 << 30
#: Files that mark a folder saved by ``datasets`` (``Dataset`` / ``DatasetDict.save_to_disk``).
_SAVED_DATASET_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")
#: Separator between documents in a split's token stream.
DOC_SEPARATOR = "\n\n"
#: HF names that need a config name, mapped to a small default config.
_HF_DEFAULT_CONFIGS = {"wikitext": "wikitext-2-raw-v1"}


@dataclass(frozen=True)
class Corpus:
    """Documents split three ways.

    Attributes:
        name: Where the text came from (``pydoc``, a file path, a dataset name).
        train: Training documents.
        validation: Documents that decide (perplexity, acceptance of cycles).
        test: Documents only reported.
        fingerprint: sha256 of the three splits (identifies the data in manifests).
    """

    name: str
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]
    fingerprint: str = field(default="")

    def split(self, name: str) -> tuple[str, ...]:
        """The documents of one split.

        Raises:
            ConfigError: Unknown split name.
        """
        if name not in ("train", "validation", "test"):
            raise ConfigError(f"unknown split {name!r}; use train, validation or test.")
        docs: tuple[str, ...] = getattr(self, name)
        return docs

    def sizes(self) -> dict[str, int]:
        """Characters per split."""
        return {s: sum(len(d) for d in self.split(s)) for s in ("train", "validation", "test")}


class Tokenizer(Protocol):
    """Text to token ids and back."""

    @property
    def vocab_size(self) -> int:
        """Number of token ids."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (invalid pieces replaced, never an error)."""


class ByteTokenizer:
    """UTF-8 bytes as tokens (vocabulary 256): needs no files, so ``tiny`` works offline."""

    @property
    def vocab_size(self) -> int:
        return 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


class HFTokenizer:
    """A Hugging Face tokenizer behind the :class:`Tokenizer` protocol.

    Args:
        tokenizer: A ``transformers`` tokenizer (loaded offline by the caller).
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer

    @property
    def vocab_size(self) -> int:
        return len(self._tok)

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in self._tok.encode(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode([int(i) for i in ids]))


# --------------------------------------------------------------------------- loading
def _fingerprint(*splits: Sequence[str]) -> str:
    h = hashlib.sha256()
    for docs in splits:
        for d in docs:
            h.update(d.encode("utf-8"))
            h.update(b"\x1e")
        h.update(b"\x1d")
    return h.hexdigest()


def _split_documents(name: str, docs: Sequence[str], seed: int) -> Corpus:
    # Identical documents are kept once: a copy in two splits would leak training text into
    # validation (pydoc_data.topics files some texts under two keys).
    docs = list(dict.fromkeys(d for d in docs if d.strip()))
    if len(docs) < 3:
        raise ConfigError(
            f"dataset {name!r} has {len(docs)} document(s); at least 3 are needed to split by "
            "document into train / validation / test (separate documents with blank lines)."
        )
    total = sum(len(d) for d in docs)
    order = numpy_rng("plasticity-corpus", name, seed).permutation(len(docs))
    val: list[str] = []
    test: list[str] = []
    train: list[str] = []
    for i in order:
        doc = docs[int(i)]
        if sum(map(len, val)) < HELDOUT_SHARE * total:
            val.append(doc)
        elif sum(map(len, test)) < HELDOUT_SHARE * total:
            test.append(doc)
        else:
            train.append(doc)
    if not train:
        raise ConfigError(
            f"dataset {name!r} is too small to keep any training document after holding out "
            "validation and test; use a larger text."
        )
    return Corpus(name, tuple(train), tuple(val), tuple(test), _fingerprint(train, val, test))


def _builtin_documents() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


def _file_documents(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"dataset file {path} is not UTF-8 text; convert it first.") from None
    except OSError as exc:
        raise ConfigError(f"cannot read dataset file {path}: {exc.strerror}.") from None
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    docs: list[str] = []
    current: list[str] = []
    for p in paragraphs:
        current.append(p)
        if sum(len(c) for c in current) >= MIN_DOC_CHARS:
            docs.append(DOC_SEPARATOR.join(current))
            current = []
    if current:
        docs.append(DOC_SEPARATOR.join(current))
    return docs


def _folder_documents(folder: Path) -> list[str]:
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
    )
    if not files:
        raise ConfigError(
            f"dataset folder {folder} holds no text files ({', '.join(TEXT_SUFFIXES)}); "
            "pass a folder of text files, a text file, or a folder saved by datasets."
        )
    size = sum(p.stat().st_size for p in files)
    if size > MAX_CORPUS_BYTES:
        raise ConfigError(
            f"dataset folder {folder} holds {size / 2**20:.0f} MiB of text, more than the "
            f"{MAX_CORPUS_BYTES // 2**20} MiB read at once; pass a smaller folder."
        )
    docs = []
    for p in files:
        try:
            docs.append(p.read_text(encoding="utf-8").replace("\r\n", "\n"))
        except UnicodeDecodeError:
            raise ConfigError(f"dataset file {p} is not UTF-8 text; convert it first.") from None
        except OSError as exc:
            raise ConfigError(f"cannot read dataset file {p}: {exc.strerror}.") from None
    return docs


def _saved_dataset_documents(folder: Path) -> list[str]:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            f"dataset folder {folder} was saved by the Hugging Face `datasets` package, which "
            "is not installed; pip install datasets, or pass a folder of text files."
        ) from None
    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as exc:  # a damaged or foreign folder: say so in one line
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot load dataset folder {folder} ({first}).") from None
    parts = [loaded[k] for k in sorted(loaded)] if isinstance(loaded, dict) else [loaded]
    lines: list[str] = []
    for part in parts:
        lines += [str(t) for t in part[_text_column(part.column_names, part.features, folder)]]
    return _joined_rows(lines)


def _text_column(names: Sequence[str], features: Any, where: object) -> str:
    """The column that holds the text: ``text``, else the only string column."""
    if "text" in names:
        return "text"
    strings = [
        n for n in names if getattr(features.get(n), "dtype", None) in ("string", "large_string")
    ]
    if len(strings) != 1:
        raise ConfigError(
            f"dataset {where} has no 'text' column and {len(strings)} string columns "
            f"({', '.join(strings) or 'none'}); rename the text column to 'text'."
        )
    return strings[0]


def _joined_rows(lines: Sequence[str]) -> list[str]:
    """Rows (a hub dataset's lines) joined in order into documents of at least
    :data:`MIN_DOC_CHARS` characters."""
    docs: list[str] = []
    current: list[str] = []
    for line in lines:
        current.append(line)
        if sum(len(c) for c in current) >= MIN_DOC_CHARS:
            docs.append("".join(current))
            current = []
    if current:
        docs.append("".join(current))
    return docs


@contextlib.contextmanager
def _offline_env() -> Iterator[None]:
    keys = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _hf_documents(name: str) -> list[str]:
    hint = (
        f"use --dataset {BUILTIN_DATASET} (built-in) or --dataset PATH to a local text file "
        "or a folder (of text files, or saved by datasets' save_to_disk)"
    )
    try:
        import datasets
    except ImportError:
        raise NotFoundError(
            f"dataset {name!r} is neither a local file nor available offline (the Hugging Face "
            f"`datasets` package is not installed, and nothing is downloaded here); {hint}."
        ) from None
    ds_name, _, cfg = name.partition(":")
    cfg = cfg or _HF_DEFAULT_CONFIGS.get(ds_name, "")
    try:
        with _offline_env():
            ds = datasets.load_dataset(ds_name, cfg or None, split="train")
    except Exception as exc:  # datasets raises many kinds when offline; all mean "not here"
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise NotFoundError(
            f"Hugging Face dataset {name!r} is not available offline ({first}); {hint}."
        ) from None
    return _joined_rows([str(t) for t in ds[_text_column(ds.column_names, ds.features, name)]])


def load_corpus(dataset: str | os.PathLike[str] | None = None, *, seed: int = 0) -> Corpus:
    """Load and split a corpus (see the module docstring for the sources).

    Args:
        dataset: ``None`` or ``"pydoc"`` for the built-in text, a text-file path, a folder
            of text files or one saved by ``datasets``, or a Hugging Face dataset name
            (``"wikitext"``, ``"name:config"``) available offline.
        seed: Seeds the assignment of documents to splits.

    Returns:
        The split corpus.

    Raises:
        ConfigError: The file or folder is unreadable, too small or too large.
        NotFoundError: The name is neither a file nor a dataset available offline.
    """
    raw = BUILTIN_DATASET if dataset is None else os.fspath(dataset)
    if raw in (BUILTIN_DATASET, "builtin"):
        return _split_documents(BUILTIN_DATASET, _builtin_documents(), seed)
    path = Path(raw).expanduser()
    if path.is_file():
        return _split_documents(str(path), _file_documents(path), seed)
    if path.is_dir():
        # Named (and its split seeded) by the folder's own name: a copied or moved folder
        # splits the same way.
        name = path.resolve().name or str(path)
        if any((path / marker).is_file() for marker in _SAVED_DATASET_MARKERS):
            return _split_documents(name, _saved_dataset_documents(path), seed)
        return _split_documents(name, _folder_documents(path), seed)
    if path.exists():
        raise ConfigError(f"dataset {raw!r} is neither a file nor a folder; pass a text file.")
    looks_like_path = os.sep in raw or raw.endswith((".txt", ".md", ".text"))
    if looks_like_path:
        raise NotFoundError(f"dataset file {raw!r} does not exist; pass an existing text file.")
    return _split_documents(raw, _hf_documents(raw), seed)


# --------------------------------------------------------------------------- tokens
@dataclass(frozen=True)
class TokenData:
    """A corpus as token streams, one per split (documents joined by :data:`DOC_SEPARATOR`).

    Attributes:
        train: ``(N_train,)`` token ids.
        validation: ``(N_val,)`` token ids.
        test: ``(N_test,)`` token ids.
        vocab_size: Size of the tokenizer's vocabulary.
    """

    train: torch.Tensor
    validation: torch.Tensor
    test: torch.Tensor
    vocab_size: int

    def stream(self, split: str) -> torch.Tensor:
        """The token stream of one split.

        Raises:
            ConfigError: Unknown split name.
        """
        if split not in ("train", "validation", "test"):
            raise ConfigError(f"unknown split {split!r}; use train, validation or test.")
        out: torch.Tensor = getattr(self, split)
        return out

    def windows(self, split: str, context: int, max_windows: int | None = None) -> torch.Tensor:
        """Consecutive windows of ``context + 1`` tokens, overlapping by one token.

        Every token but the first of the stream is a target exactly once (inputs are
        ``w[:, :-1]``, targets ``w[:, 1:]``). Taken from the start of the stream, so the same
        windows come back at every call.

        Args:
            split: Which stream.
            context: Tokens the model sees per window.
            max_windows: Keep at most this many (the first ones).

        Returns:
            ``(W, context + 1)`` token ids.

        Raises:
            ConfigError: The split holds fewer than ``context + 1`` tokens.
        """
        s = self.stream(split)
        n = (len(s) - 1) // context
        if n < 1:
            raise ConfigError(
                f"the {split} split has {len(s)} tokens, fewer than one window of "
                f"{context + 1}; use a larger dataset or a shorter --context."
            )
        if max_windows is not None:
            n = min(n, max_windows)
        idx = torch.arange(n)[:, None] * context + torch.arange(context + 1)[None, :]
        return s[idx]  # (W, context + 1)

    def random_batch(self, context: int, batch: int, gen: torch.Generator) -> torch.Tensor:
        """A batch of training windows at seeded random offsets: ``(batch, context + 1)``.

        Raises:
            ConfigError: The training stream is shorter than one window.
        """
        s = self.train
        if len(s) <= context + 1:
            raise ConfigError(
                f"the train split has {len(s)} tokens, fewer than one window of {context + 1}."
            )
        starts = torch.randint(0, len(s) - context - 1, (batch,), generator=gen)
        idx = starts[:, None] + torch.arange(context + 1)[None, :]
        return s[idx]


def tokenize_corpus(corpus: Corpus, tokenizer: Tokenizer) -> TokenData:
    """Token streams of the three splits.

    Raises:
        ConfigError: A split encodes to no tokens.
    """
    streams = {}
    for split in ("train", "validation", "test"):
        ids = tokenizer.encode(DOC_SEPARATOR.join(corpus.split(split)))
        if not ids:
            raise ConfigError(f"the {split} split of {corpus.name!r} has no text.")
        streams[split] = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    return TokenData(
        streams["train"], streams["validation"], streams["test"], int(tokenizer.vocab_size)
    )
