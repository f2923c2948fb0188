"""Quick self-test of the plasticity system (seed 004's script; a thin wrapper).

Same as ``selfimprove plasticity test ARGS``; see ``--help`` for the flags.

Example: python scripts/test_adaptive_plasticity.py --model_name tiny --cycles 2
"""

from __future__ import annotations

import sys

from selfimprove.surfaces.cli.plasticity import main

if __name__ == "__main__":
    main(["test", *sys.argv[1:]], prog_name="test_adaptive_plasticity.py")
