"""Run every benchmark, then regenerate ``RESULTS.md``: ``python -m benchmarks --mode quick``.

Each runner runs in its own process (a crash, Ray's workers or a memory measurement in one do
not touch the others); a runner that fails is reported and the others still run, and the exit
status is non-zero. ``make bench`` runs ``--mode full`` (the protocol), ``make bench-quick``
``--mode quick``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks._common import BENCH_DIR, REPO_ROOT, RESULTS_DIR, log, setup

__all__ = ["RUNNERS", "main"]

#: Runner modules, cheapest first.
RUNNERS = (
    "honesty",
    "compression",
    "distillation",
    "two_objectives",
    "improvement",
    "head_pruning",
    "overhead",
    "soak",
    "scale",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the runners named (default: all) in ``--mode``, then the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("full", "quick"), default="quick")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--only", nargs="*", choices=RUNNERS, default=list(RUNNERS))
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    setup()
    t0 = time.perf_counter()
    failed = []
    for name in args.only:
        log.info("=== %s (%s)", name, args.mode)
        t = time.perf_counter()
        rc = subprocess.call(
            [
                sys.executable,
                "-m",
                f"benchmarks.{name}",
                "--mode",
                args.mode,
                "--out",
                str(args.out),
            ],
            cwd=REPO_ROOT,
        )
        log.info("=== %s: exit %d after %.0f s", name, rc, time.perf_counter() - t)
        if rc != 0:
            failed.append(name)
    rc = subprocess.call(
        [
            sys.executable,
            "-m",
            "benchmarks.report",
            "--results",
            str(args.out),
            "--out",
            str(BENCH_DIR / "RESULTS.md"),
        ],
        cwd=REPO_ROOT,
    )
    log.info(
        "all done in %.0f s%s",
        time.perf_counter() - t0,
        f"; failed: {', '.join(failed)}" if failed else "",
    )
    return 1 if failed or rc else 0


if __name__ == "__main__":
    raise SystemExit(main())
