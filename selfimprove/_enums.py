"""The base of the package's public string enums: ``str()`` and f-strings give the value
(``promote``), not ``Decision.PROMOTE`` — what a user prints should read well, on every Python
version (3.11's ``str()`` of a ``(str, Enum)`` is the member name, 3.12's ``format()`` follows)."""

from __future__ import annotations

import enum

__all__ = ["ValueEnum"]


class ValueEnum(str, enum.Enum):
    """A string enum that prints as its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)
