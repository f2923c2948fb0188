"""Show a run and write its HTML dashboard (seed 004's script; a thin wrapper).

Same as ``selfimprove plasticity visualize ARGS``; see ``--help`` for the flags.

Example: python scripts/visualize_plasticity_results.py --results_dir DIR --dashboard
"""

from __future__ import annotations

import sys

from selfimprove.surfaces.cli.plasticity import main

if __name__ == "__main__":
    main(["visualize", *sys.argv[1:]], prog_name="visualize_plasticity_results.py")
