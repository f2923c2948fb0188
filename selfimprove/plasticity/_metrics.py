"""The run's metrics as JSON Lines: one object per cycle and phase, appended as they happen.

Each line holds ``run``, ``cycle`` (0 for the baseline and the final summary), ``phase``
(``baseline``, ``prune``, ``measure``, ``grow``, ``learn``, ``decision``, ``final``), ``time``
(UTC ISO), and the phase's measurements (perplexity, degeneration, heads per layer, parameters,
latency, strategy, ...). NaN and infinities are written as ``null``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from selfimprove.errors import ConfigError
from selfimprove.store import clean_json

__all__ = ["METRICS_FILE", "MetricsLog", "read_metrics"]

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends records to ``<run_dir>/metrics.jsonl``.

    Args:
        run_dir: The run folder (created if needed).
    """

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / METRICS_FILE
        self.run = run_dir.name

    def write(self, cycle: int, phase: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Append one record and return it (as written)."""
        record = clean_json(
            {
                "run": self.run,
                "cycle": cycle,
                "phase": phase,
                "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **dict(values),
            }
        )
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
        return dict(record)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All records of a run, in order.

    Raises:
        ConfigError: No metrics file, or a malformed line.
    """
    path = run_dir / METRICS_FILE
    if not path.is_file():
        raise ConfigError(
            f"no {METRICS_FILE} in {run_dir}; pass --results_dir with a run folder "
            "(run_YYYYmmdd-HHMMSS) written by `selfimprove plasticity run`."
        )
    records = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} line {i} is not JSON ({exc.msg}).") from None
    return records
