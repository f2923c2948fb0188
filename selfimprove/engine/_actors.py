"""Who acts, for the audit trail and the events: one rule for every part of the engine."""

from __future__ import annotations

import getpass
import os

__all__ = ["Actor", "whoami"]


def whoami() -> str:
    """The operating-system user (``uid:<n>`` where there is no login name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (containers without a passwd entry)
        return f"uid:{os.getuid()}"


class Actor:
    """The default actor of an engine, shared by its parts (settable after construction).

    Args:
        name: Who acts when a call names nobody (``None``: the operating-system user).
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name

    def __call__(self, actor: str | None = None) -> str:
        """``actor``, else the default, else the operating-system user."""
        return actor or self.name or whoami()
