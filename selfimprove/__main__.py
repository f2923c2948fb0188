"""``python -m selfimprove``: the same command as ``selfimprove``."""

from __future__ import annotations

from selfimprove.surfaces.cli import main

main()
