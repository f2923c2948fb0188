"""Run prune -> measure -> grow -> learn cycles (seed 004's script; a thin wrapper).

Same as ``selfimprove plasticity run ARGS``; see ``--help`` for the flags.

Example: python scripts/run_adaptive_plasticity.py --model_name tiny --dataset pydoc --cycles 3
"""

from __future__ import annotations

import sys

from selfimprove.surfaces.cli.plasticity import main

if __name__ == "__main__":
    main(["run", *sys.argv[1:]], prog_name="run_adaptive_plasticity.py")
