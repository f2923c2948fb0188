"""``tiny``: a small byte-level GPT-2 pre-trained on this machine, once, on the run's corpus.

Nothing can be downloaded at run time, so ``--model_name tiny`` is built locally: a GPT-2 of
:class:`TinySpec` (by default 4 layers x 8 heads, 128 dimensions, byte vocabulary of 256, no
dropout) trained for a few hundred real AdamW steps on the *training split* of the run's corpus
(``--dataset``; the built-in ``pydoc`` text when none is given). It is the very split the
plasticity cycle fine-tunes on, from the same :class:`Corpus`, so the validation and test text
a cycle measures on is never seen in pre-training.

The weights are cached once per machine, in :func:`tiny_cache_dir` (``$SELFIMPROVE_CACHE/tiny``,
else the platform's user cache folder, e.g. ``~/.cache/selfimprove/tiny`` on Linux), under
``<key>/`` (safetensors + manifest with the sha256), where ``key`` hashes the spec and the
corpus's fingerprint (its three splits): another corpus or spec trains another entry, and every
later call, from any home, loads in well under a second. An entry is staged in a temporary
folder beside it and renamed into place, so two processes pre-training at once never see half
an entry (the first rename wins; the other process loads the winner's). The weights are checked
against their sha256 on load; an unusable entry is trained again, with a warning. Where the
cache folder cannot be written, the entry goes to ``<home>/plasticity/tiny/`` instead (a
warning says so), which is also looked in for entries written there before.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from selfimprove.config import resolve_home
from selfimprove.errors import CheckpointError, ConfigError
from selfimprove.measure.finetune import FinetuneConfig, finetune_
from selfimprove.nn.transformer.checkpoint import load_model, save_model
from selfimprove.nn.transformer.hf import new_model
from selfimprove.nn.transformer.measure import mean_nll
from selfimprove.seeding import derive_seed, torch_seeded
from selfimprove.tasks.corpus import ByteTokenizer, Corpus, load_corpus, tokenize_corpus
from selfimprove.tasks.language import TINY_NAME, TinySpec, tiny_config

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel

__all__ = ["CACHE_ENV", "load_tiny", "tiny_cache_dir"]

logger = logging.getLogger(__name__)

#: Environment variable naming the machine-wide cache folder (``tiny`` lives in its ``tiny/``).
CACHE_ENV = "SELFIMPROVE_CACHE"
_APP = "selfimprove"


def _user_cache_dir() -> Path:
    """The platform's user cache folder of the package, as ``platformdirs.user_cache_dir``
    gives it. Written out here because platformdirs is not a dependency of the package (nor
    installed beside it), and three lines do not justify one."""
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
        return base / _APP / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / _APP
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative $XDG_CACHE_HOME is invalid and to be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / _APP


def tiny_cache_dir() -> Path:
    """The folder ``tiny``'s entries are cached in, shared by every home on the machine.

    Returns:
        ``$SELFIMPROVE_CACHE/tiny`` when that variable is set, else ``tiny/`` in the user cache
        folder (``$XDG_CACHE_HOME/selfimprove`` or ``~/.cache/selfimprove`` on Linux,
        ``~/Library/Caches/selfimprove`` on macOS, ``%LOCALAPPDATA%\\selfimprove\\Cache`` on
        Windows). Nothing is created.

    Raises:
        RuntimeError: No variable set and no home directory to put the cache in.
    """
    raw = os.environ.get(CACHE_ENV, "").strip()
    base = Path(raw).expanduser() if raw else _user_cache_dir()
    return base / "tiny"


def _cache_key(spec: TinySpec, fingerprint: str) -> str:
    return f"{derive_seed('tiny', sorted(spec.to_dict().items()), fingerprint):016x}"


def _read(entry: Path, *, warn: bool = True) -> GPT2LMHeadModel | None:
    """The model cached in ``entry``; ``None`` if there is none or it is unusable (a warning
    says so unless ``warn`` is false)."""
    path = entry / "model"
    if not path.with_suffix(".json").exists():
        return None
    try:
        model = load_model(path)
    except CheckpointError as exc:
        if warn:
            logger.warning("the cached tiny model is unusable (%s); pre-training it again", exc)
        return None
    logger.info("loaded tiny from %s", entry)
    return model


def _stage(root: Path, key: str) -> Path:
    """A new empty folder in ``root`` to write an entry into before it is renamed into place.

    Raises:
        OSError: ``root`` cannot be created or written to.
    """
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=root))


def _discard(entry: Path) -> None:
    """Remove an unusable entry: renamed aside first, so no process ever reads half of it."""
    aside = entry.with_name(f".{entry.name}.{os.getpid()}.{secrets.token_hex(4)}.stale")
    try:
        os.rename(entry, aside)
    except OSError:  # gone already (another process discarded it) or not ours to move
        return
    shutil.rmtree(aside, ignore_errors=True)


def _publish(staged: Path, entry: Path) -> GPT2LMHeadModel | None:
    """Rename the staged folder to ``entry``.

    Returns:
        ``None`` when ours is now the entry; the entry's model when another process put a
        usable one there first (ours is then deleted: the first writer wins).
    """
    for attempt in range(2):
        try:
            os.rename(staged, entry)  # atomic; fails when entry is a folder with files in it
            return None
        except OSError as exc:
            winner = _read(entry, warn=False)
            if winner is not None:
                shutil.rmtree(staged, ignore_errors=True)
                return winner
            if attempt == 0 and entry.exists():
                _discard(entry)  # an unusable entry (a crash of an older version): replaced
                continue
            logger.warning(
                "could not cache tiny in %s (%s); it is pre-trained again next time", entry, exc
            )
    shutil.rmtree(staged, ignore_errors=True)
    return None


def _pretrain(
    spec: TinySpec, corpus: Corpus, progress: Callable[[int, int, float], None] | None
) -> tuple[GPT2LMHeadModel, dict[str, object]]:
    """``tiny`` trained on the training split of ``corpus``, and its manifest fields.

    Raises:
        ConfigError: The training split is shorter than one window of ``spec.context``.
    """
    data = tokenize_corpus(corpus, ByteTokenizer())
    if len(data.train) <= spec.context + 1:
        raise ConfigError(
            f"the training split of {corpus.name!r} has {len(data.train)} bytes, too few to "
            f"pre-train tiny on windows of {spec.context + 1}; use a larger --dataset, or a "
            "GPT-2 model of your own (--model-name FOLDER)."
        )
    with torch_seeded(spec.seed):
        model = new_model(tiny_config(spec))
    cfg = FinetuneConfig(
        steps=spec.steps,
        lr=spec.lr,
        batch_size=spec.batch_size,
        context=spec.context,
        warmup_steps=max(1, spec.steps // 20),
        weight_decay=0.01,
    )
    # finetune_ reads the training stream only; validation is measured below, for the manifest.
    result = finetune_(
        model,
        data,
        cfg,
        seed=spec.seed,
        on_step=(lambda s, loss: progress(s + 1, spec.steps, loss)) if progress else None,
    )
    model.eval()
    try:
        val_ppl: float | None = math.exp(
            mean_nll(model, data.windows("validation", spec.context, max_windows=64))
        )
    except ConfigError:  # a validation split shorter than one window: nothing to report
        val_ppl = None
    logger.info(
        "tiny pre-trained on %s: train loss %.3f, validation perplexity %s (%.1f s)",
        corpus.name,
        result.losses[-1],
        "-" if val_ppl is None else f"{val_ppl:.2f}",
        result.seconds,
    )
    return model, {
        "name": TINY_NAME,
        "tiny_spec": spec.to_dict(),
        "corpus": corpus.name,
        "corpus_sha256": corpus.fingerprint,
        "pretrain_split": "train",
        "final_train_loss": result.losses[-1],
        "validation_perplexity": val_ppl,
        "pretrain_seconds": result.seconds,
    }


def load_tiny(
    spec: TinySpec | None = None,
    *,
    corpus: Corpus | None = None,
    home: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    on_pretrain: Callable[[Path], None] | None = None,
) -> GPT2LMHeadModel:
    """``tiny`` from the machine-wide cache, pre-training and caching it first if needed.

    Args:
        spec: Architecture and pre-training (default :class:`TinySpec`).
        corpus: Pre-trained on its training split only (default: the built-in ``pydoc``
            corpus); pass the very :class:`Corpus` the run measures on.
        home: Home folder (see :func:`selfimprove.config.resolve_home`): where ``tiny`` is
            cached when :func:`tiny_cache_dir` cannot be written, and looked for after it.
        progress: Called as ``(step, steps, loss)`` while pre-training.
        on_pretrain: Called once with the entry's folder before pre-training starts (never
            when the cache holds the model).

    Returns:
        The model, in eval mode.

    Raises:
        ConfigError: Bad spec, a training split too short to pre-train on, or neither the
            cache folder nor the home writable.
    """
    spec = spec or TinySpec()
    corpus = corpus if corpus is not None else load_corpus(None)
    key = _cache_key(spec, corpus.fingerprint)
    home_root = resolve_home(home, create=False) / "plasticity" / "tiny"
    try:
        root: Path | None = tiny_cache_dir()
    except RuntimeError as exc:  # no home directory to find the user cache folder in
        logger.warning("no machine-wide cache for tiny (%s); caching it in the home", exc)
        root = None
    for folder in (root, home_root):
        if folder is not None and (model := _read(folder / key)) is not None:
            return model
    if root is not None:
        try:
            staged, entry = _stage(root, key), root / key
        except OSError as exc:
            logger.warning(
                "cannot write the tiny cache %s (%s); caching tiny in the home folder %s "
                "instead (set %s to a writable folder to share it between homes)",
                root,
                exc.strerror or exc,
                home_root,
                CACHE_ENV,
            )
            root = None
    if root is None:
        resolve_home(home)  # ConfigError, with the fix, when the home cannot be written either
        staged, entry = _stage(home_root, key), home_root / key
    try:
        if on_pretrain is not None:
            on_pretrain(entry)
        logger.info("pre-training tiny (%d steps) on %s into %s", spec.steps, corpus.name, entry)
        model, extra = _pretrain(spec, corpus, progress)
        save_model(model, staged / "model", extra=extra)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    winner = _publish(staged, entry)
    return model if winner is None else winner
