"""Fault injection for crash-safety tests: a real SIGKILL at a named point.

Set ``SELFIMPROVE_CRASH_AT=<point>`` in a child process and it kills itself when it reaches
that point, exactly as an outside ``kill -9`` would. Unset, a point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["crash_point"]


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if ``$SELFIMPROVE_CRASH_AT`` names this point."""
    if os.environ.get("SELFIMPROVE_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
