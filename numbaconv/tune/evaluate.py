"""``python -m numbaconv.tune.evaluate --workload PATH``: how good is the heuristic on
shapes nobody tuned?

For each layer and primitive it asks the heuristic for a schedule (from the configs
already on disk: tuned neighbours or the rule), then tunes the shape itself without
saving, times the two schedules again side by side (alternating blocks, each call
followed by a small Numba kernel, as the tuner times), and reports tuned time / heuristic
time (1.0: the heuristic found the best).
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from ..cpu.heuristic import choose
from ..primitives import NAMES as PRIMITIVES
from ..timing import alternating_medians
from ..workloads import load_workload
from .backends import CpuBackend
from .space import load_space
from .tuner import operands, tune_one, with_batch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m numbaconv.tune.evaluate",
                                     description=__doc__)
    parser.add_argument("--workload", required=True)
    parser.add_argument("--ops", default=",".join(PRIMITIVES))
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--select", default="")
    args = parser.parse_args(argv)
    layers = with_batch([l for l in load_workload(args.workload) if args.select in l.name],
                        args.batch)
    space = load_space()
    ratios = []
    print(f"{'layer':<20} {'op':<16} {'heuristic ms':>12} {'tuned ms':>9} {'ratio':>6}  source")
    for layer in layers:
        for op in [o.strip() for o in args.ops.split(",")]:
            g = layer.geometry
            choice = choose(op, g, "float32", 4)
            first = operands(op, g, np.float32, np.random.default_rng(1))
            outcome = tune_one(layer, op, "float32", space, float("inf"), log=lambda s: None)
            backend = CpuBackend()
            run = backend.in_program(lambda schedule: backend.run(op, first, g, schedule))
            times = alternating_medians({"heuristic": lambda: run(choice.schedule),
                                         "tuned": lambda: run(outcome.best)}, rounds=4)
            heuristic = times["heuristic"]
            best = min(times["tuned"], heuristic)
            ratios.append(best / heuristic)
            print(f"{layer.name:<20} {op:<16} {heuristic * 1e3:12.2f} {best * 1e3:9.2f} "
                  f"{best / heuristic:6.2f}  {choice.source.split(':')[0]}", flush=True)
    geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"\nheuristic reaches {geomean:.2f} of the tuned speed (geometric mean), "
          f"worst {min(ratios):.2f}, over {len(ratios)} untuned problems")
    return 0


if __name__ == "__main__":
    sys.exit(main())
