"""``python -m numbaconv.tune``: tune a workload's layers and cache the best schedules.

With no arguments it tunes ``tuning/workloads/resnet50.yaml`` at batch 1, the three
primitives in float32, within the default budget, and writes the user config file
(``$NUMBACONV_CONFIG_DIR`` or ``~/.cache/numbaconv/configs``), which every later call of
the ops reads.

``--device cuda`` tunes the CUDA kernels on the current GPU (its own config file, keyed by
GPU name and compute capability). ``--device cuda --compile-only`` needs no GPU: it
compiles every CUDA kernel of the search space for sm_80 and sm_90 with the real compiler
and prints registers, spills, shared memory and occupancy per schedule.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np

from .. import configs
from ..cpu import codegen
from ..primitives import NAMES as PRIMITIVES
from ..timing import median_seconds
from ..workloads import WORKLOAD_DIR, WorkloadError, load_workload
from .backends import backend as make_backend
from .space import SPACE_FILE, load_space
from .tuner import save_outcome, tune_one, with_batch


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m numbaconv.tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default=str(WORKLOAD_DIR / "resnet50.yaml"),
                        help="YAML list of layers (keys name, N, H, W, C, K, R, S, strides, "
                             "padding, dilations; NHWC/HWIO). Default: %(default)s")
    parser.add_argument("--ops", default=",".join(PRIMITIVES),
                        help="comma-separated primitives to tune (default: all three)")
    parser.add_argument("--dtype", default=None, choices=["float32", "float64"],
                        help="default: float32 (--compile-only: both)")
    parser.add_argument("--budget", type=float, default=300.0,
                        help="overall time budget in seconds, calibration included (default: "
                             "%(default)s); a problem is begun only while twice the median "
                             "problem's time is left; the rest keep the default heuristic")
    parser.add_argument("--config-dir", default=None,
                        help="directory of the config file to write (default: "
                             "$NUMBACONV_CONFIG_DIR or ~/.cache/numbaconv/configs)")
    parser.add_argument("--batch", type=int, default=None, help="override every layer's batch")
    parser.add_argument("--select", default="", help="only layers whose name contains TEXT")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per candidate")
    parser.add_argument("--space", default=str(SPACE_FILE), help="search space YAML")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="tune the CPU loop nests or the CUDA kernels (default: %(default)s)")
    parser.add_argument("--calibrate", action="store_true",
                        help="only calibrate: measure the FMA peak and rank the register tiles "
                             "(done first anyway when the device has no calibration yet)")
    parser.add_argument("--no-calibrate", action="store_true",
                        help="tune without calibrating first, even where none was done")
    parser.add_argument("--compile-only", action="store_true",
                        help="with --device cuda: no GPU needed; compile every CUDA kernel of "
                             "the search space for sm_80 and sm_90 and print its resources")
    args = parser.parse_args(argv)
    if args.compile_only and args.device != "cuda":
        parser.error("--compile-only applies to --device cuda")
    if (args.calibrate or args.no_calibrate) and args.device != "cpu":
        parser.error("--calibrate and --no-calibrate apply to --device cpu")
    if args.calibrate and args.no_calibrate:
        parser.error("--calibrate and --no-calibrate exclude each other")
    args.dtypes = [args.dtype] if args.dtype else (["float32", "float64"] if args.compile_only
                                                   else ["float32"])
    args.dtype = args.dtypes[0]
    args.ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    for op in args.ops:
        if op not in PRIMITIVES:
            parser.error(f"--ops: unknown primitive {op!r}; choose from {', '.join(PRIMITIVES)}")
    if args.budget <= 0:
        parser.error("--budget must be positive")
    if args.batch is not None and args.batch < 1:
        parser.error("--batch must be >= 1")
    return args


def matmul_rate(geometry, dtype) -> float:
    """GFLOP/s of a NumPy matmul with the layer's im2col GEMM shape."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((geometry.batch * geometry.out_height * geometry.out_width,
                             geometry.filter_height * geometry.filter_width
                             * geometry.in_channels)).astype(dtype)
    b = rng.standard_normal((a.shape[1], geometry.out_channels)).astype(dtype)
    # Short: the table comes after the budget's last problem (at 0.3 s of pause and five
    # 0.1 s repeats per layer it had overrun the budget by seconds).
    seconds = median_seconds(lambda i: a @ b, repeats=3, settle=0.05, min_seconds=0.02)
    return geometry.flops / seconds / 1e9


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.compile_only:
        from .compile_report import report

        return report(load_space(args.space), args.ops, args.dtypes)
    try:
        backend = make_backend(args.device)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        layers = [l for l in load_workload(args.workload) if args.select in l.name]
    except (OSError, WorkloadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    layers = with_batch(layers, args.batch)
    space = load_space(args.space)
    path = (Path(args.config_dir) / f"{backend.key()}.yaml" if args.config_dir
            else configs.user_config_path(args.device))
    start = time.monotonic()
    if args.device == "cpu" and not args.no_calibrate:
        backend.calibration = (configs.calibration() or configs.file_calibration(path)
                               if not args.calibrate else None)
        if backend.calibration is None:
            try:
                backend.calibration = run_calibration(path)
            except KeyboardInterrupt:
                print("\ninterrupted: no calibration recorded", flush=True)
                return 130
        if args.calibrate:
            return 0
    problems = [(layer, op) for layer in layers for op in args.ops]
    print(f"numbaconv tune: {len(layers)} layers × {len(args.ops)} primitives, {args.dtype}, "
          f"budget {args.budget:.0f} s, {numba.get_num_threads()} CPU threads, device "
          f"{backend.key()}\nwriting {path}", flush=True)
    deadline = start + args.budget
    outcomes = []
    # Of the problems tuned so far: one due to end past the budget is not begun (twice the
    # median: a problem that compiles kernels takes several times the median).
    durations = []
    try:
        for index, (layer, op) in enumerate(problems, 1):
            began = time.monotonic()
            if began + (2 * statistics.median(durations) if durations else 0.0) > deadline:
                print(f"budget spent: {len(problems) - index + 1} of {len(problems)} problems "
                      f"left untuned (they use the default heuristic)", flush=True)
                break
            outcome = tune_one(layer, op, args.dtype, space, deadline, args.repeats,
                               backend=backend)
            durations.append(time.monotonic() - began)
            save_outcome(outcome, path, backend)
            outcomes.append(outcome)
            best = f"{outcome.best} {outcome.best_seconds * 1e3:.2f} ms" if outcome.best else "none"
            retimed = f", {outcome.retimed} re-timed (disturbed)" if outcome.retimed else ""
            if outcome.crowded:
                retimed += ", other work held the cores: the default kept"
            print(f"[{index}/{len(problems)}] {layer.name} {op}: {outcome.timed} timed, "
                  f"{len(outcome.rejected)} rejected{retimed}, best {best}"
                  f" ({time.monotonic() - start:.0f} s)", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: every result above is saved", flush=True)
    print_table(outcomes, args.dtype, with_matmul=args.device == "cpu")
    first_calls = sum(o.compile_seconds for o in outcomes)
    print(f"{sum(o.retimed for o in outcomes)} timings (candidates', finalists') had slow calls "
          f"on a small share of the cores (other load, threads waking) timed again")
    crowded = sum(o.crowded for o in outcomes)
    if crowded:
        print(f"{crowded} problems kept the default schedule: other processes held the cores "
              f"through each of their final timings (tune them again on a quieter machine)")
    print(f"total {time.monotonic() - start:.0f} s, of which {first_calls:.0f} s in first calls "
          f"(compilation or cache loads, and verification); {codegen.compiled_variants()} "
          f"generated kernel variants loaded; results in {path}")
    return 0


def run_calibration(path: Path) -> dict:
    """Calibrate this CPU and record it in the config file at ``path``."""
    from ..cpu.calibration import calibrate
    from ..machine import this_machine

    machine = this_machine()
    print(f"numbaconv calibrate: {machine.key} ({machine.cpu}, {machine.vector_bits}-bit "
          f"vectors, {machine.vector_registers} vector registers)", flush=True)
    found = calibrate(machine, log=lambda line: print(line, flush=True))
    configs.save_calibration(path, found)
    print(f"calibrated in {found['seconds']:.0f} s: FMA peak {found['fma']['peak_gflops']:.0f} "
          f"GFLOP/s; tiles {found['tiles']['float32']}; written to {path}", flush=True)
    return found


def print_table(outcomes, dtype, with_matmul: bool = True):
    header = (f"{'layer':<18} {'op':<16} {'default ms':>10} {'tuned ms':>9} {'speed-up':>8} "
              f"{'GFLOP/s':>8} {'matmul':>7}  schedule")
    print("\n" + header + "\n" + "-" * len(header))
    rates = {}
    for o in outcomes:
        if o.best is None:
            print(f"{o.layer.name:<18} {o.primitive:<16} no verified candidate")
            continue
        g = o.layer.geometry
        if g not in rates:
            rates[g] = matmul_rate(g, dtype) if with_matmul else None
        gflops = g.flops / o.best_seconds / 1e9
        default_ms = f"{o.default_seconds * 1e3:10.2f}" if o.default_seconds else f"{'-':>10}"
        speedup = f"{o.speedup:8.2f}" if o.speedup else f"{'-':>8}"
        fraction = f"{gflops / rates[g]:7.2f}" if with_matmul else f"{'-':>7}"
        print(f"{o.layer.name:<18} {o.primitive:<16} {default_ms} {o.best_seconds * 1e3:9.2f} "
              f"{speedup} {gflops:8.1f} {fraction}  {o.best}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
