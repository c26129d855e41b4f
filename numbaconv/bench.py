"""Benchmark: ``python -m numbaconv.bench [--workload PATH] [--select TEXT] [--batch N]``.

For each layer and primitive, in one run and alternating in blocks (with a pause between
blocks, so that no side pays for another's spinning worker threads), it times:

- the public op as a user calls it (tuned schedule if the config cache has one),
- the same call with the default heuristic's schedule (what an untuned shape gets),
- a NumPy float32 matmul of the same flop count (the layer's own im2col GEMM shape),

and, in a process of its own (two OpenMP runtimes in one process take each other's cores)
whose blocks take turns with those, PyTorch's CPU convolution of the same geometry when
``torch`` is installed (never a dependency), with the same thread count: a slow spell of
the machine hits both sides alike. It prints GFLOP/s, the fraction of the CPU's FMA
peak (calibrated, else measured), the fraction of the matmul rate, tuned/default and
PyTorch/numbaconv time ratios (> 1: numbaconv is faster; ``torch/def``: against the
default heuristic's schedule, what an untuned shape gets), GB/s (the three tensors moved
once: what memory-bound depthwise layers are judged by), then the geometric means per
primitive. Last, per primitive, every layer back to back without pauses, as a network runs
them (numbaconv's passes and PyTorch's taking turns); ``--pass-layers`` also gives each
layer's median time within those passes beside its time alone (the table's), since a layer
called once between others can run slower than its repeated calls show. ``--plot
FILE.png`` draws the GFLOP/s against the peak (matplotlib, if installed).

``--half`` times instead each layer's public op in float16 and bfloat16 (the latter where
ml_dtypes is installed) against float32 on the same values, and prints each half type's
time over the float32 time; ``--overhead`` the per-call cost of every op on a tiny layer.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numba
import numpy as np

import numbaconv as nc

from . import configs
from .api import call_for
from .cpu import cold_start, half
from .cpu.rule import rule
from .cpu.winograd import filter_cache
from .machine import this_machine
from .primitives import NAMES as PRIMITIVES
from .primitives import random_tensors, tensor_shape
from .timing import SETTLE_SECONDS, OtherLoad, alternating_medians, crowded, warm_up
from .tune.tuner import with_batch
from .workloads import WORKLOAD_DIR, Layer, load_workload



def _inputs(layer: Layer, rng, dtype=np.float32):
    """(x, w, dy) of the layer, random."""
    tensors = random_tensors(layer.geometry, dtype, rng)
    return tensors["input"], tensors["filter"], tensors["output"]


def _options(g):
    return dict(strides=(g.stride_h, g.stride_w), dilations=(g.dilation_h, g.dilation_w),
                padding=[[0, 0], [g.pad_top, g.pad_bottom], [g.pad_left, g.pad_right], [0, 0]])


def _op(primitive: str, layer: Layer, x, w, dy) -> tuple[str, tuple, dict]:
    """The public op of ``primitive`` on the layer: its name, arguments and options."""
    g = layer.geometry
    if primitive == "forward":
        return "conv2d", (x, w), _options(g)
    if primitive == "backward_data":
        return "conv2d_backprop_input", (g.input_shape, w, dy), _options(g)
    return "conv2d_backprop_filter", (x, g.filter_shape, dy), _options(g)


def op_calls(primitive: str, layer: Layer, x, w, dy, same_filters: bool = False):
    """(as a user calls it, with the default heuristic's schedule): zero-argument functions
    (the second the op's prepared work under that schedule, which a call of the public op
    would run once remembered). Each call finds its filter changed, as in training (the
    Winograd transforms kept from call to call made again), unless ``same_filters`` (as in
    inference)."""
    g = layer.geometry
    op, args, options = _op(primitive, layer, x, w, dy)
    public = getattr(nc, op)
    call = call_for(op, *args, **options)
    default = call.prepare(rule(primitive, g, x.itemsize, this_machine(), configs.calibration()))
    as_called = functools.partial(public, *args, **options)
    with_default = functools.partial(default.run, call.operands)
    if same_filters:
        return as_called, with_default
    return _with_filters_changed(as_called), _with_filters_changed(with_default)


def _with_filters_changed(call):
    """``call`` after :func:`filter_cache.forget`: each call's filter as training leaves it."""
    def training_call():
        filter_cache.forget()
        return call()

    return training_call


#: The pause after the matmul's block: OpenBLAS's threads spin for a while after a
#: matmul, and a Numba kernel started meanwhile waits for a core.
BLAS_SETTLE_SECONDS = 0.3


def matmul_call(layer: Layer, rng, dtype=np.float32):
    """The layer's forward as one GEMM: [N·OH·OW, R·S·C] @ [R·S·C, K] (same flops)."""
    g = layer.geometry
    a = rng.standard_normal((g.batch * g.out_height * g.out_width,
                             g.filter_height * g.filter_width * g.in_channels_per_group)
                            ).astype(dtype)
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
    options = dict(stride=(g.stride_h, g.stride_w), dilation=(g.dilation_h, g.dilation_w),
                   groups=g.groups)
    if primitive == "forward":
        return lambda: torch.nn.functional.conv2d(xt, wt, **options)
    if primitive == "backward_data":
        return lambda: torch.nn.grad.conv2d_input(xt.shape, wt, dyt, **options)
    return lambda: torch.nn.grad.conv2d_weight(xt, wt.shape, dyt, **options)


def traffic_bytes(g, itemsize: int) -> int:
    """What any schedule must move at least: the three tensors once (memory-bound layers,
    depthwise ones, are judged by GB/s)."""
    return sum(math.prod(tensor_shape(t, g)) for t in ("input", "filter", "output")) * itemsize


def geomean(values):
    values = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def parse_args(argv):
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
    parser.add_argument("--plot", default=None, metavar="FILE.png",
                        help="draw each layer's GFLOP/s per primitive against the FMA peak "
                             "(needs matplotlib)")
    parser.add_argument("--pass-layers", action="store_true",
                        help="also each layer's median time within the passes back to back")
    parser.add_argument("--no-torch", action="store_true", help="do not time PyTorch")
    parser.add_argument("--same-filters", action="store_true",
                        help="each call's filter as the last call left it (inference): "
                             "Winograd's kept transforms reused; by default each call finds "
                             "its filter changed (training)")
    parser.add_argument("--half", action="store_true",
                        help="only float16 and bfloat16 against float32: each layer's time "
                             "in the half type over its float32 time")
    parser.add_argument("--overhead", action="store_true",
                        help="only the per-call cost of each op on a tiny layer")
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.primitives = [p.strip() for p in args.ops.split(",") if p.strip()]
    for primitive in args.primitives:
        if primitive not in PRIMITIVES:
            parser.error(f"--ops: unknown primitive {primitive!r}; choose from {PRIMITIVES}")
    return args


def _layers(args) -> list:
    layers = []
    for path in args.workload or [str(WORKLOAD_DIR / "resnet50.yaml")]:
        layers += [l for l in load_workload(path) if args.select in l.name]
    return with_batch(layers, args.batch)


def torch_worker(args) -> int:
    """PyTorch's side, in a process of its own: times on request, one line of JSON per
    line of stdin (:class:`TorchWorker`): ``layer NAME PRIMITIVE`` the median of one block
    of calls, ``sequence PRIMITIVE`` one pass through every layer back to back (after
    untimed ones), ``cpu`` this process's CPU seconds so far."""
    import torch  # noqa: F401  (where it cannot load, the worker ends: its start says why)

    layers = {layer.name: layer for layer in _layers(args)}
    rng = np.random.default_rng(0)
    calls, sequences = {}, {}
    _reply("ready")
    for line in sys.stdin:
        command, *words = line.split()
        if command == "layer":
            name, primitive = words
            if (name, primitive) not in calls:
                layer = layers[name]
                calls[name, primitive] = torch_call(primitive, layer, *_inputs(layer, rng))
            _reply(alternating_medians({"torch": calls[name, primitive]}, rounds=1)["torch"])
        elif command == "sequence":
            (primitive,) = words
            if primitive not in sequences:
                sequences[primitive] = [torch_call(primitive, layer, *_inputs(layer, rng))
                                        for layer in layers.values()]
            warm_up(lambda: _one_pass(sequences[primitive]))  # as numbaconv's (in_sequence)
            total, calls_ = _one_pass(sequences[primitive])
            _reply({"total": total, "calls": calls_})
        elif command == "cpu":
            _reply(time.process_time())
    return 0


def _reply(value):
    print(json.dumps(value), flush=True)


class TorchWorker:
    """PyTorch timed in a child process (:func:`torch_worker`) on request, so that its
    blocks take turns with numbaconv's; None from :meth:`start` without torch."""

    def __init__(self, argv):
        self._errors = tempfile.TemporaryFile(mode="w+")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "numbaconv.bench", *argv, "--torch-worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors, text=True)

    @classmethod
    def start(cls, argv) -> "TorchWorker | None":
        if importlib.util.find_spec("torch") is None:
            return None
        worker = cls(argv)
        try:
            if worker._ask() == "ready":
                return worker
        except RuntimeError as error:
            print(f"PyTorch not timed: {error}", flush=True)
        worker.close()
        return None

    def layer(self, name: str, primitive: str) -> float:
        """Median seconds of one block of PyTorch's calls of the layer."""
        return self._ask("layer", name, primitive)

    def sequence(self, primitive: str) -> tuple[float, list]:
        """Seconds of one pass through every layer back to back, and of each call in it."""
        found = self._ask("sequence", primitive)
        return found["total"], found["calls"]

    def cpu_seconds(self) -> float:
        return self._ask("cpu")

    def _ask(self, *words):
        if words:
            self._process.stdin.write(" ".join(words) + "\n")
            self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            self._errors.seek(0)
            errors = self._errors.read().strip().splitlines()
            raise RuntimeError(errors[-1] if errors else "the worker exited")
        return json.loads(line)

    def close(self):
        self._process.stdin.close()
        self._process.wait()
        self._errors.close()


#: ``--overhead``: a layer so small that its call is all overhead (1×4×4×8, 3×3, SAME).
TINY_SHAPES = dict(input=(1, 4, 4, 8), filter=(3, 3, 8, 8), depthwise=(3, 3, 8, 1))


def overhead_calls(rng) -> dict:
    """Each op on the tiny layer: op name -> (the op's arguments)."""
    x = rng.standard_normal(TINY_SHAPES["input"]).astype(np.float32)
    w = rng.standard_normal(TINY_SHAPES["filter"]).astype(np.float32)
    dw = rng.standard_normal(TINY_SHAPES["depthwise"]).astype(np.float32)
    dy = rng.standard_normal(TINY_SHAPES["input"]).astype(np.float32)
    shape, strides = TINY_SHAPES["input"], [1, 1, 1, 1]
    return {"conv2d": (x, w, 1, "SAME"),
            "conv2d_backprop_input": (shape, w, dy, 1, "SAME"),
            "conv2d_backprop_filter": (x, TINY_SHAPES["filter"], dy, 1, "SAME"),
            "depthwise_conv2d": (x, dw, strides, "SAME"),
            "depthwise_conv2d_backprop_input": (shape, dw, dy, strides, "SAME"),
            "depthwise_conv2d_backprop_filter": (x, TINY_SHAPES["depthwise"], dy, strides,
                                                 "SAME")}


def overhead_report(rounds: int) -> int:
    """Per-call cost of each op on a tiny layer: as a user calls it (remembered after the
    first call) and through the full path (arguments checked, schedule chosen and the run
    prepared anew), in microseconds; medians of alternating blocks."""
    print(f"per-call cost on a {TINY_SHAPES['input']} input, 3×3 filter, SAME, float32 "
          f"({numba.get_num_threads()} threads), microseconds")
    print(f"{'op':<34} {'call':>6} {'full path':>9}")
    for op, arguments in overhead_calls(np.random.default_rng(0)).items():
        public = getattr(nc, op)
        times = alternating_medians(
            {"call": lambda: public(*arguments),
             "full": lambda: call_for(op, *arguments).run()}, rounds=rounds, per_round=200)
        print(f"{op:<34} {times['call'] * 1e6:6.1f} {times['full'] * 1e6:9.1f}", flush=True)
    return 0


def half_report(args) -> int:
    """``--half``: each layer and primitive as a user calls it in float32 and in each half
    type (:func:`numbaconv.cpu.half.available_types`), on the same values (rounded to the
    half type), alternating; the float32 time and each half type's time over it, then
    their geometric means."""
    layers, halves = _layers(args), half.available_types()
    machine = this_machine()
    rng = np.random.default_rng(0)
    print(f"half types against float32, {numba.get_num_threads()} threads; {machine.cpu} "
          f"({machine.llvm_cpu}, {machine.vector_bits}-bit vectors); time ratios, > 1: the "
          f"half type is slower")
    header = f"{'layer':<20} {'primitive':<16} {'float32 ms':>10} " + " ".join(
        f"{name:>9}" for name in halves)
    print(header + "\n" + "-" * len(header))
    ratios = {(primitive, name): [] for primitive in args.primitives for name in halves}
    for layer in layers:
        for primitive in args.primitives:
            x, w, dy = _inputs(layer, rng)
            functions = {}
            for name, dtype in {"float32": x.dtype, **halves}.items():
                op, arguments, options = _op(primitive, layer,
                                             *(a.astype(dtype) for a in (x, w, dy)))
                functions[name] = functools.partial(getattr(nc, op), *arguments, **options)
            for function in functions.values():
                warm_up(function)
            times = alternating_medians(functions, rounds=args.rounds)
            row = [times[name] / times["float32"] for name in halves]
            for name, ratio in zip(halves, row):
                ratios[primitive, name].append(ratio)
            print(f"{layer.name:<20} {primitive:<16} {times['float32'] * 1e3:10.3f} "
                  + " ".join(f"{ratio:9.2f}" for ratio in row), flush=True)
    print("\ngeometric means (half type time / float32 time)")
    for primitive in args.primitives:
        print(f"  {primitive:<16} " + "   ".join(
            f"{name} {geomean(ratios[primitive, name]):.2f}" for name in halves))
    return 0


def fma_peak() -> float:
    """The calibrated float32 FMA peak of this CPU (GFLOP/s), measured now if none is."""
    found = ((configs.calibration() or {}).get("fma") or {}).get("peak_gflops")
    if found:
        return float(found)
    from .cpu.calibration import measure_fma_peak

    return measure_fma_peak(this_machine()).peak


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    # The chosen schedules are timed, not the starters of a cold start: build in the call.
    os.environ.setdefault(cold_start.ENV, "0")
    if args.torch_worker:
        return torch_worker(args)
    if args.overhead:
        return overhead_report(args.rounds)
    if args.half:
        return half_report(args)
    torch = None if args.no_torch else TorchWorker.start(argv)
    try:
        return report(args, torch)
    finally:
        if torch:
            torch.close()


def report(args, torch: TorchWorker | None) -> int:
    """The table, the geometric means and the passes back to back (see the module
    docstring); PyTorch's side from ``torch`` (None: not timed)."""
    layers, primitives = _layers(args), args.primitives
    machine = this_machine()
    peak = fma_peak()
    rng = np.random.default_rng(0)
    print(f"numbaconv {nc.__version__}, numba {numba.__version__}, numpy {np.__version__}, "
          f"{numba.get_num_threads()} threads, float32; {machine.cpu} ({machine.llvm_cpu}, "
          f"{machine.vector_bits}-bit vectors), FMA peak {peak:.0f} GFLOP/s; "
          + ("filters unchanged from call to call (inference)" if args.same_filters
             else "each call's filter changed (training)")
          + ("; PyTorch timed in its own process, in turns" if torch
             else "; PyTorch not timed"))
    header = (f"{'layer':<20} {'primitive':<16} {'ms':>7} {'GFLOP/s':>8} {'GB/s':>6} "
              f"{'default':>8} "
              f"{'peak':>5} {'matmul':>7} {'tuned/def':>9} {'torch/us':>8} {'torch/def':>9}")
    print(header + "\n" + "-" * len(header))
    ratios = {p: {"default": [], "torch": [], "torch_default": [], "torch_strided_or_1x1": []}
              for p in primitives}
    rates = {p: [] for p in primitives}  # (layer, tuned, default, torch) GFLOP/s
    alone = {}  # (layer name, primitive) -> the table's seconds as called
    other = OtherLoad()
    torch_cpu = torch.cpu_seconds() if torch else 0.0
    for layer in layers:
        g = layer.geometry
        for primitive in primitives:
            x, w, dy = _inputs(layer, rng)
            tuned, default = op_calls(primitive, layer, x, w, dy, args.same_filters)
            times, theirs = _layer_times(
                {"tuned": tuned, "default": default, "matmul": matmul_call(layer, rng)},
                torch and (lambda: torch.layer(layer.name, primitive)), args.rounds)
            alone[layer.name, primitive] = times["tuned"]
            rate = g.flops / times["tuned"] / 1e9
            default_rate = g.flops / times["default"] / 1e9
            matmul_rate = g.flops / times["matmul"] / 1e9
            vs_default = times["default"] / times["tuned"]
            ratios[primitive]["default"].append(vs_default)
            torch_text, torch_rate = f"{'-':>8} {'-':>9}", None
            if torch:
                vs_torch = theirs / times["tuned"]
                torch_rate = g.flops / theirs / 1e9
                ratios[primitive]["torch"].append(vs_torch)
                ratios[primitive]["torch_default"].append(theirs / times["default"])
                if (g.stride_h, g.stride_w) != (1, 1) or g.filter_height * g.filter_width == 1:
                    ratios[primitive]["torch_strided_or_1x1"].append(vs_torch)
                torch_text = f"{vs_torch:8.2f} {theirs / times['default']:9.2f}"
            rates[primitive].append((layer.name, rate, default_rate, torch_rate))
            bandwidth = traffic_bytes(g, x.itemsize) / times["tuned"] / 1e9
            print(f"{layer.name:<20} {primitive:<16} {times['tuned'] * 1e3:7.2f} {rate:8.1f} "
                  f"{bandwidth:6.1f} {default_rate:8.1f} {rate / peak:5.2f} "
                  f"{rate / matmul_rate:7.2f} "
                  f"{vs_default:9.2f} {torch_text}", flush=True)
    print()
    # The worker's CPU time is PyTorch's side of the table, not other load.
    other_cores = other.cores((torch.cpu_seconds() - torch_cpu) if torch else 0.0)
    if other_cores is not None:
        print(f"other processes used {other_cores:.2f} cores on average while the table was "
              f"timed" + (": crowded, its figures understate this machine"
                          if crowded(other_cores, numba.get_num_threads()) else ""))
    print("\ngeometric means (time ratios, > 1: the first is slower)")
    for primitive, found in ratios.items():
        print(f"  {primitive:<16} default/tuned {geomean(found['default']):.2f}   "
              f"torch/numbaconv {geomean(found['torch']):.2f}   "
              f"torch/default {geomean(found['torch_default']):.2f}   "
              f"(strided or 1×1 layers: {geomean(found['torch_strided_or_1x1']):.2f})")
    print("\nevery layer back to back, no pauses (as a network runs them), median of "
          f"{SEQUENCE_PASSES} passes")
    for primitive in primitives:
        inputs = [(layer, *_inputs(layer, rng)) for layer in layers]
        ours, theirs = in_sequence([op_calls(primitive, *layer_args, args.same_filters)[0]
                                    for layer_args in inputs],
                                   torch and (lambda: torch.sequence(primitive)))
        line = f"  {primitive:<16} numbaconv {ours.total * 1e3:8.2f} ms"
        if torch:
            line += (f"   torch {theirs.total * 1e3:8.2f} ms   "
                     f"torch/numbaconv {theirs.total / ours.total:.2f}")
        print(line, flush=True)
        if args.pass_layers:
            for index, layer in enumerate(layers):
                line = (f"    {layer.name:<20} in the passes {ours.calls[index] * 1e3:7.2f} ms, "
                        f"alone {alone[layer.name, primitive] * 1e3:7.2f}")
                if torch:
                    line += (f"   torch in the passes {theirs.calls[index] * 1e3:7.2f} ms, "
                             f"torch/numbaconv {theirs.calls[index] / ours.calls[index]:.2f}")
                print(line, flush=True)
    if args.plot:
        plot(rates, peak, args.plot)
    return 0


def plot(rates: dict, peak: float, path: str):
    """Per primitive, each layer's GFLOP/s (tuned, untuned, PyTorch) against the FMA peak."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot needs matplotlib (pip install matplotlib): no plot drawn")
        return
    figure, axes = plt.subplots(len(rates), 1, figsize=(12, 3.2 * len(rates)), squeeze=False)
    for axis, (primitive, rows) in zip(axes[:, 0], rates.items()):
        names = [row[0] for row in rows]
        positions = range(len(rows))
        for column, label, marker in ((1, "numbaconv tuned", "o"),
                                      (2, "numbaconv untuned", "s"), (3, "PyTorch", "^")):
            values = [row[column] for row in rows]
            if any(v is not None for v in values):
                axis.plot(positions, [v if v is not None else float("nan") for v in values],
                          marker, label=label)
        axis.axhline(peak, color="grey", linestyle="--", label=f"FMA peak {peak:.0f}")
        axis.set_title(primitive)
        axis.set_ylabel("GFLOP/s")
        axis.set_xticks(list(positions))
        axis.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"plot written to {path}")


SEQUENCE_PASSES = 5


def _layer_times(functions: dict, theirs, rounds: int) -> tuple[dict, float | None]:
    """Median seconds per call of each of ``functions`` and of PyTorch's (``theirs()``: the
    median of one block of its calls, or None), in ``rounds`` rounds: our functions in turns
    (:func:`alternating_medians`, one block each), then PyTorch's block."""
    ours = {name: [] for name in functions}
    found = []
    for round_ in range(rounds):
        shift = round_ % len(functions)
        names = list(functions)[shift:] + list(functions)[:shift]
        times = alternating_medians({name: functions[name] for name in names}, rounds=1,
                                    after={"matmul": BLAS_SETTLE_SECONDS})
        for name, seconds in times.items():
            ours[name].append(seconds)
        if theirs:
            found.append(theirs())
    return ({name: statistics.median(values) for name, values in ours.items()},
            statistics.median(found) if found else None)


@dataclass(frozen=True)
class PassTimes:
    """Median seconds of a pass back to back (``total``) and of each of its calls, in
    order (``calls``: each call's own median over the passes)."""

    total: float
    calls: tuple

    @classmethod
    def of(cls, passes: list) -> "PassTimes":
        """The medians of ``passes``: (total, per-call seconds) of each pass."""
        return cls(statistics.median(total for total, _ in passes),
                   tuple(map(statistics.median, zip(*(calls for _, calls in passes)))))


def in_sequence(calls: list, theirs=None) -> tuple[PassTimes, PassTimes | None]:
    """A pass through ``calls`` back to back, after warm passes: what a network sees,
    including any runtime's threads still spinning from the call before; and ``theirs()``
    ((total, per-call seconds) of PyTorch's pass, or None), the passes taking turns."""
    ours, found = [], []
    for _ in range(SEQUENCE_PASSES):
        # After the other side's pass: a pause (its threads stop spinning), then untimed
        # passes (the first calls after an idle spell run slow, as the cores wake).
        time.sleep(SETTLE_SECONDS)
        warm_up(lambda: _one_pass(calls))
        ours.append(_one_pass(calls))
        if theirs:
            time.sleep(SETTLE_SECONDS)
            found.append(theirs())
    return PassTimes.of(ours), PassTimes.of(found) if found else None


def _one_pass(calls: list) -> tuple[float, list]:
    """Seconds of one pass through ``calls``, and of each call."""
    each = []
    start = time.perf_counter()
    for call in calls:
        before = time.perf_counter()
        call()
        each.append(time.perf_counter() - before)
    return time.perf_counter() - start, each


if __name__ == "__main__":
    sys.exit(main())
