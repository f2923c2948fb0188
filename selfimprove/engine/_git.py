"""Code improvements in a git work tree: refuse an unclean file, commit a kept change, commit a
revert on rollback.

Why the ``git`` executable through :mod:`subprocess`, not a library: the engine needs six plain
commands (``rev-parse``, ``ls-files``, ``status``, ``config``, ``commit``, ``rev-parse HEAD``),
and the git binary is the reference implementation of the user's own repository: its config,
index format, filters, signing and worktrees all behave exactly as they do on the command
line. GitPython (not a dependency of selfimprove) itself runs that same binary, so it would add
a dependency and no capability; pygit2 and dulwich re-implement git and can disagree with the
user's git on newer repository features. Every call is an argument list (never a shell), with a
time limit, no terminal prompt, and the repository's location taken from the root alone (the
``GIT_DIR``-style variables of a calling hook are dropped).

What is committed is exactly one path, with ``git commit --only -- <path>``: whatever else is
staged or modified in the tree (someone else's work) is neither committed nor touched. A rollback
writes the exact bytes back (as outside git) and commits that one path with git's own revert
message (``Revert "…"`` / ``This reverts commit <sha>.``); ``git revert`` itself is not used
because it refuses to run while anything at all is staged, and it would take the commit to undo
from the ledger, which approval never trusts for what runs. Hooks are turned off for these
commits (``core.hooksPath`` set to the null device): approval runs the check command it showed
the approver, and nothing else from the repository.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfimprove.errors import CodePatchError
from selfimprove.store import AuditRecord

__all__ = [
    "GitRepo",
    "approved_commit",
    "change_message",
    "gain_line",
    "revert_message",
    "work_tree",
]

logger = logging.getLogger(__name__)

#: Seconds a git command may take before it is killed (a commit on a large repository, a
#: signing agent that waits).
GIT_TIMEOUT_S = 60.0

#: The author and committer when the repository's config names none (a fresh repository on a
#: machine without a global git config).
FALLBACK_NAME = "selfimprove"
FALLBACK_EMAIL = "selfimprove@localhost"

#: Variables that would point git at another repository than the root's (set inside hooks).
_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_COMMON_DIR",
    "GIT_PREFIX",
)

#: Files in the git folder while a merge, cherry-pick, revert or rebase is under way (a partial
#: commit is refused then).
_IN_PROGRESS = ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "rebase-merge", "rebase-apply")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LOCATION_VARS}
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C", LANGUAGE="C")
    return env


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "(no output)"


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``git args`` in ``cwd``; the result whatever its exit status.

    Raises:
        CodePatchError: git is not installed, or it ran past :data:`GIT_TIMEOUT_S`.
    """
    exe = shutil.which("git")
    if exe is None:
        raise CodePatchError(
            f"{cwd} is in a git work tree but the git executable is not on PATH; install git "
            "so that changes are committed, or use a root outside the work tree."
        )
    try:
        return subprocess.run(
            [exe, *args],
            cwd=cwd,
            env=_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CodePatchError(
            f"`git {' '.join(args[:2])}` in {cwd} ran past {GIT_TIMEOUT_S:.0f} s and was killed."
        ) from None


def _inside_git(root: Path) -> bool:
    """Whether ``root`` or a folder above it holds a ``.git`` (a folder, or a file for a linked
    worktree or a submodule): found without the git executable."""
    return any((folder / ".git").exists() for folder in (root, *root.parents))


@dataclass(frozen=True)
class GitRepo:
    """The git work tree a root lies in.

    Attributes:
        top: The work tree's top folder (resolved).
        git_dir: Its git folder (resolved).
    """

    top: Path
    git_dir: Path

    def relative(self, path: Path) -> str:
        """``path`` relative to the top, as git names it."""
        return path.resolve().relative_to(self.top).as_posix()

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _git(self.top, *args)

    def unclean_refusal(self, path: Path, improvement_id: int, verb: str) -> str | None:
        """Why ``path`` may not be changed and committed now, or ``None``: it is not tracked, it
        has uncommitted changes (in the work tree or staged), or a merge, cherry-pick, revert or
        rebase is under way. Only this file is looked at: other files' changes are left alone
        and are not committed."""
        name = self.relative(path)
        busy = [what for what in _IN_PROGRESS if (self.git_dir / what).exists()]
        if busy:
            return (
                f"{self.top} is in the middle of a git operation ({busy[0]} exists); nothing was "
                f"{verb}. Finish or abort it, then try improvement {improvement_id} again."
            )
        tracked = self._run("ls-files", "--error-unmatch", "--", name)
        if tracked.returncode != 0:
            return (
                f"{name} is not tracked by git in {self.top}; nothing was {verb}. Commit it "
                f"first (git add {name} && git commit), then try improvement {improvement_id} "
                "again."
            )
        status = self._run("status", "--porcelain=v1", "--untracked-files=no", "--", name)
        if status.returncode != 0:
            return f"git status failed in {self.top}: {_first_line(status.stderr)}"
        if status.stdout.strip():
            return (
                f"{name} has uncommitted changes (git status: {status.stdout.rstrip()!r}); "
                f"nothing was {verb}. Commit or discard them, then try improvement "
                f"{improvement_id} again."
            )
        return None

    def _identity(self) -> list[str]:
        """``-c`` options naming the fallback author for what the config leaves unset."""
        options = []
        for key, fallback in (("user.name", FALLBACK_NAME), ("user.email", FALLBACK_EMAIL)):
            if not self._run("config", "--get", key).stdout.strip():
                options += ["-c", f"{key}={fallback}"]
        return options

    def commit(self, path: Path, message: str) -> str:
        """Commit the work tree's ``path``, and only it, with ``message``; its commit id.

        Raises:
            CodePatchError: git refused (its first line of error in the message).
        """
        name = self.relative(path)
        done = self._run(
            *self._identity(),
            "-c",
            f"core.hooksPath={os.devnull}",
            "commit",
            "--only",
            "--no-verify",
            "--quiet",
            "-m",
            message,
            "--",
            name,
        )
        if done.returncode != 0:
            raise CodePatchError(
                f"git commit of {name} failed: {_first_line(done.stderr or done.stdout)}"
            )
        head = self._run("rev-parse", "HEAD")
        sha = head.stdout.strip()
        logger.info("committed %s as %s", name, sha[:12])
        return sha

    def branch(self) -> str | None:
        """The checked-out branch (``None``: a detached HEAD)."""
        out = self._run("symbolic-ref", "--quiet", "--short", "HEAD")
        return out.stdout.strip() or None


def work_tree(root: Path) -> GitRepo | None:
    """The git work tree ``root`` lies in, or ``None`` when it lies in none.

    A root with no ``.git`` in it or above it is no work tree, and git is not needed.

    Raises:
        CodePatchError: A ``.git`` is there but git is not installed, or git cannot read the
            repository (for example one it finds unsafe because another user owns it).
    """
    if not _inside_git(root):
        return None
    found = _git(
        root, "rev-parse", "--is-inside-work-tree", "--show-toplevel", "--absolute-git-dir"
    )
    if found.returncode != 0:
        if "not a git repository" in found.stderr or "must be run in a work tree" in found.stderr:
            return None  # no repository, or the root is inside a .git folder
        raise CodePatchError(
            f"git cannot read the repository of {root}: {_first_line(found.stderr)}"
        )
    lines = found.stdout.splitlines()
    if len(lines) < 3 or lines[0] != "true":  # inside a .git folder, or a bare repository
        return None
    return GitRepo(top=Path(lines[1]).resolve(), git_dir=Path(lines[2]).resolve())


def approved_commit(trail: Sequence[AuditRecord]) -> str | None:
    """The commit an improvement's approval made (its last ``applied`` audit entry's
    ``git.commit``), or ``None``: applied outside a git work tree."""
    commit = None
    for entry in trail:
        if entry.action == "applied":
            git = entry.details.get("git")
            commit = git.get("commit") if isinstance(git, dict) else None
    return commit if isinstance(commit, str) and commit else None


def _one_line(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def gain_line(performance: dict[str, Any], checked: bool) -> str:
    """The measured gain as one line: the check's number before and after, or why none."""
    if not performance:
        return (
            "not measured (the check printed no number)" if checked else "not measured (no check)"
        )
    verdict = "significant" if performance.get("significant") else "not significant"
    return (
        f"{performance['improvement']:+.2%} ({performance['metric']}: "
        f"{performance['before']:.4g} -> {performance['after']:.4g}, "
        f"p={performance['p_value']:.3g}, {verdict})"
    )


def change_message(
    *,
    improvement_id: int,
    name: str,
    function_name: str,
    file_name: str,
    who: str,
    audit_id: int,
    performance: dict[str, Any],
    check: str,
    digest: str,
) -> str:
    """The message of an approved change's commit: a subject, a sentence, and trailers that
    ``git interpret-trailers`` reads (the improvement id, the audit entry, the measured gain,
    the check and the approval digest)."""
    return (
        f"selfimprove: {_one_line(name)} (code improvement {improvement_id})\n\n"
        f"Replaces {function_name} in {file_name}; approved by {who}.\n\n"
        f"Improvement-Id: {improvement_id}\n"
        f"Audit-Id: {audit_id}\n"
        f"Measured-Gain: {gain_line(performance, bool(check))}\n"
        f"Check: {check or 'none'}\n"
        f"Approval-Digest: {digest}\n"
    )


def revert_message(
    *, improvement_id: int, name: str, commit: str, who: str, audit_id: int, reason: str
) -> str:
    """The message of a rollback's commit, in the form ``git revert`` writes, with trailers."""
    return (
        f'Revert "selfimprove: {_one_line(name)} (code improvement {improvement_id})"\n\n'
        f"This reverts commit {commit}.\n\n"
        f"Rolled back by {who}{': ' + _one_line(reason, 200) if reason else ''}.\n\n"
        f"Improvement-Id: {improvement_id}\n"
        f"Audit-Id: {audit_id}\n"
    )
