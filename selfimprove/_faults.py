"""Fault injection for crash-safety tests: a real SIGKILL at a named point.

Set ``SELFIMPROVE_CRASH_AT=<point>`` in a child process and it kills itself when it reaches
that point, exactly as an outside ``kill -9`` would. With ``SELFIMPROVE_CRASH_ONCE=<file>`` as
well, only the first process to get there dies (it creates the file first; a retry finds it
and goes on). Unset, a point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["crash_point"]


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if ``$SELFIMPROVE_CRASH_AT`` names this point (and, with
    ``$SELFIMPROVE_CRASH_ONCE``, if no process died here before)."""
    if os.environ.get("SELFIMPROVE_CRASH_AT") != name:
        return
    marker = os.environ.get("SELFIMPROVE_CRASH_ONCE")
    if marker:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)
