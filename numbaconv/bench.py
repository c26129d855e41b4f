"""Benchmark: ``python -m numbaconv.bench [--workload PATH] [--select TEXT] [--batch N]``.

For each layer and primitive, in one run and alternating in blocks (with a pause between
blocks, so that no side pays for another's spinning worker threads), it times:

- the public op as a user calls it (tuned schedule if the config cache has one),
- the same call with the default heuristic's schedule (what an untuned shape gets),
- a NumPy float32 matmul of the same flop count (the layer's own im2col GEMM shape),
- PyTorch's CPU convolution of the same geometry, when ``torch`` is importable (never a
  dependency), with the same thread count, last in each round, then a long pause,

and prints GFLOP/s, the fraction of the matmul rate, tuned/default and PyTorch/numbaconv
time ratios (> 1: numbaconv is faster), then the geometric means per primitive. Last, per
primitive, every layer back to back without pauses, as a network runs them (where one
runtime's spinning threads do cost the next call), numbaconv and PyTorch.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import numba
import numpy as np

import numbaconv as nc

from . import configs
from .api import call_for
from .cpu.rule import rule
from .machine import this_machine
from .primitives import NAMES as PRIMITIVES
from .primitives import random_tensors
from .timing import SETTLE_SECONDS, alternating_medians
from .tune.tuner import with_batch
from .workloads import WORKLOAD_DIR, Layer, load_workload

TORCH_SETTLE_SECONDS = 1.0


def _inputs(layer: Layer, rng, dtype=np.float32):
    """(x, w, dy) of the layer, random."""
    tensors = random_tensors(layer.geometry, dtype, rng)
    return tensors["input"], tensors["filter"], tensors["output"]


def _options(g):
    return dict(strides=(g.stride_h, g.stride_w), dilations=(g.dilation_h, g.dilation_w),
                padding=[[0, 0], [g.pad_top, g.pad_bottom], [g.pad_left, g.pad_right], [0, 0]])


def op_calls(primitive: str, layer: Layer, x, w, dy):
    """(as a user calls it, with the default heuristic's schedule): zero-argument functions."""
    g = layer.geometry
    if primitive == "forward":
        call = call_for("conv2d", x, w, **_options(g))
    elif primitive == "backward_data":
        call = call_for("conv2d_backprop_input", g.input_shape, w, dy, **_options(g))
    else:
        call = call_for("conv2d_backprop_filter", x, g.filter_shape, dy, **_options(g))
    default = rule(primitive, g, x.itemsize, this_machine(), configs.calibration())
    return call.run, lambda: call.run(default)


def matmul_call(layer: Layer, rng, dtype=np.float32):
    """The layer's forward as one GEMM: [N·OH·OW, R·S·C] @ [R·S·C, K] (same flops)."""
    g = layer.geometry
    a = rng.standard_normal((g.batch * g.out_height * g.out_width,
                             g.filter_height * g.filter_width * g.in_channels)).astype(dtype)
    b = rng.standard_normal((a.shape[1], g.out_channels)).astype(dtype)
    return lambda: a @ b


def torch_call(primitive: str, layer: Layer, x, w, dy):
    """PyTorch's CPU op on the same geometry (NCHW, input pre-padded: TensorFlow's SAME
    padding can be asymmetric, PyTorch's is not), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    g = layer.geometry
    torch.set_num_threads(numba.get_num_threads())
    xp = np.pad(x, ((0, 0), (g.pad_top, g.pad_bottom), (g.pad_left, g.pad_right), (0, 0)))
    xt = torch.from_numpy(np.ascontiguousarray(xp.transpose(0, 3, 1, 2)))
    wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
    dyt = torch.from_numpy(np.ascontiguousarray(dy.transpose(0, 3, 1, 2)))
    options = dict(stride=(g.stride_h, g.stride_w), dilation=(g.dilation_h, g.dilation_w))
    if primitive == "forward":
        return lambda: torch.nn.functional.conv2d(xt, wt, **options)
    if primitive == "backward_data":
        return lambda: torch.nn.grad.conv2d_input(xt.shape, wt, dyt, **options)
    return lambda: torch.nn.grad.conv2d_weight(xt, wt.shape, dyt, **options)


def geomean(values):
    values = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m numbaconv.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", action="append",
                        help="YAML workload file, repeatable (default: resnet50.yaml)")
    parser.add_argument("--select", default="", help="only layers whose name contains TEXT")
    parser.add_argument("--batch", type=int, default=None, help="override every layer's batch")
    parser.add_argument("--ops", default=",".join(PRIMITIVES),
                        help="comma-separated primitives (default: all three)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of 3 timed calls each (median of all)")
    args = parser.parse_args(argv)
    primitives = [p.strip() for p in args.ops.split(",") if p.strip()]
    for primitive in primitives:
        if primitive not in PRIMITIVES:
            parser.error(f"--ops: unknown primitive {primitive!r}; choose from {PRIMITIVES}")
    layers = []
    for path in args.workload or [str(WORKLOAD_DIR / "resnet50.yaml")]:
        layers += [l for l in load_workload(path) if args.select in l.name]
    layers = with_batch(layers, args.batch)

    rng = np.random.default_rng(0)
    print(f"numbaconv {nc.__version__}, numba {numba.__version__}, numpy {np.__version__}, "
          f"{numba.get_num_threads()} threads, float32")
    header = (f"{'layer':<20} {'primitive':<16} {'ms':>7} {'GFLOP/s':>8} {'default':>8} "
              f"{'matmul':>7} {'tuned/def':>9} {'torch/us':>8}")
    print(header + "\n" + "-" * len(header))
    ratios = {p: {"default": [], "torch": [], "torch_strided_or_1x1": []} for p in primitives}
    for layer in layers:
        g = layer.geometry
        for primitive in primitives:
            x, w, dy = _inputs(layer, rng)
            tuned, default = op_calls(primitive, layer, x, w, dy)
            functions = {"tuned": tuned, "default": default, "matmul": matmul_call(layer, rng)}
            torch_fn = torch_call(primitive, layer, x, w, dy)
            if torch_fn is not None:
                # In the same rounds as ours, so that a slow spell of the machine hits
                # both; last in each and followed by a long pause, as PyTorch's OpenMP pool
                # keeps spinning long after a call.
                functions["torch"] = torch_fn
            times = alternating_medians(functions, rounds=args.rounds,
                                        after={"torch": TORCH_SETTLE_SECONDS})
            rate = g.flops / times["tuned"] / 1e9
            default_rate = g.flops / times["default"] / 1e9
            matmul_rate = g.flops / times["matmul"] / 1e9
            vs_default = times["default"] / times["tuned"]
            ratios[primitive]["default"].append(vs_default)
            torch_text = f"{'-':>8}"
            if "torch" in times:
                vs_torch = times["torch"] / times["tuned"]
                ratios[primitive]["torch"].append(vs_torch)
                if (g.stride_h, g.stride_w) != (1, 1) or g.filter_height * g.filter_width == 1:
                    ratios[primitive]["torch_strided_or_1x1"].append(vs_torch)
                torch_text = f"{vs_torch:8.2f}"
            print(f"{layer.name:<20} {primitive:<16} {times['tuned'] * 1e3:7.2f} {rate:8.1f} "
                  f"{default_rate:8.1f} {rate / matmul_rate:7.2f} {vs_default:9.2f} {torch_text}",
                  flush=True)
    print("\ngeometric means (time ratios, > 1: the first is slower)")
    for primitive, found in ratios.items():
        print(f"  {primitive:<16} default/tuned {geomean(found['default']):.2f}   "
              f"torch/numbaconv {geomean(found['torch']):.2f}   "
              f"(strided or 1×1 layers: {geomean(found['torch_strided_or_1x1']):.2f})")
    print("\nevery layer back to back, no pauses (as a network runs them), median of "
          f"{SEQUENCE_PASSES} passes")
    for primitive in primitives:
        inputs = [(layer, *_inputs(layer, rng)) for layer in layers]
        ours = in_sequence([op_calls(primitive, *args)[0] for args in inputs])
        line = f"  {primitive:<16} numbaconv {ours * 1e3:8.2f} ms"
        torch_calls = [torch_call(primitive, *args) for args in inputs]
        if None not in torch_calls:
            time.sleep(SETTLE_SECONDS)
            theirs = in_sequence(torch_calls)
            time.sleep(TORCH_SETTLE_SECONDS)
            line += f"   torch {theirs * 1e3:8.2f} ms   torch/numbaconv {theirs / ours:.2f}"
        print(line, flush=True)
    return 0


SEQUENCE_PASSES = 5


def in_sequence(calls: list) -> float:
    """Median seconds of one pass through ``calls`` back to back, after a warm pass: what
    a network sees, including any runtime's threads still spinning from the call before."""
    for call in calls:
        call()
    samples = []
    for _ in range(SEQUENCE_PASSES):
        start = time.perf_counter()
        for call in calls:
            call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


if __name__ == "__main__":
    sys.exit(main())
