"""The ``selfimprove`` command (typer + rich): :mod:`.app` (run, improve, status, history, ...),
:mod:`.engine` (``selfimprove engine``), :mod:`.plasticity` (``selfimprove plasticity``) and
:mod:`.common` (one-line errors, exit codes)."""

from __future__ import annotations

from selfimprove.surfaces.cli.app import app, main

__all__ = ["app", "main"]
