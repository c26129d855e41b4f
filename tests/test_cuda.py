"""The CUDA backend against the float64 reference, on Numba's CUDA simulator (conftest sets
NUMBA_ENABLE_CUDASIM=1 unless told otherwise): tiny shapes, every op, every schedule
family. The simulator runs one Python thread per CUDA thread, so schedules here use
16-thread blocks. Compilation and resources on the real compiler: test_cuda_compile.py."""

import numpy as np
import pytest
from conftest import assert_matches, random
from test_ops import OPS, Problem, call_op, expected_in_format, padding_arg, shape_in, to_format

import numbaconv as nc
import reference as ref
from numbaconv import configs
from numbaconv.api import call_for
from numbaconv.cuda import runtime
from numbaconv.cuda.schedule import CudaSchedule, default_schedule, illegal_reason
from numbaconv.geometry import conv_geometry

cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
pytestmark = pytest.mark.skipif(runtime.unavailable_reason() is not None,
                                reason=f"CUDA unavailable: {runtime.unavailable_reason()}")

DTYPES = [np.float32, np.float64]
FORMATS = ["NHWC", "NCHW"]
SMALL = ((2, 5, 6, 3), (3, 2, 3, 4), (2, 1), (1, 2), "SAME")


def problem(rng, case=SMALL, dtype=np.float32):
    input_shape, filter_shape, strides, dilations, padding = case
    return Problem(rng, input_shape, filter_shape, strides, dilations, padding, dtype)


def on_device(array):
    return cuda.to_device(np.ascontiguousarray(array))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("op", OPS)
def test_every_op_matches_reference_on_cuda(rng, op, data_format, dtype):
    p = problem(rng, dtype=dtype)
    strides, dilations, padding = SMALL[2:]
    primitive, actual = call_op(op, p, list(strides), padding, data_format, list(dilations),
                                device="cuda")
    assert isinstance(actual, np.ndarray)  # NumPy in, NumPy out
    assert_matches(actual, expected_in_format(p, primitive, data_format), dtype)


EDGE_CASES = {
    "kernel_larger_than_input_same": ((2, 3, 2, 3), (5, 4, 3, 2), (1, 1), (1, 1), "SAME"),
    "stride_larger_than_kernel": ((1, 11, 10, 2), (2, 2, 2, 3), (4, 3), (1, 1), "VALID"),
    "stride_and_dilation": ((1, 9, 8, 2), (3, 3, 2, 2), (2, 3), (2, 2), "SAME"),
    "explicit_padding": ((1, 5, 4, 2), (2, 3, 2, 3), (1, 2), (1, 1), "EXPLICIT"),
    "batch_1_channel_1": ((1, 6, 7, 1), (3, 3, 1, 1), (1, 1), (1, 1), "SAME"),
    "one_by_one_strided": ((2, 7, 6, 5), (1, 1, 5, 4), (2, 2), (1, 1), "SAME"),
}


@pytest.mark.parametrize("op", ["conv2d", "conv2d_backprop_input", "conv2d_backprop_filter"])
@pytest.mark.parametrize("case", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_edge_shapes_on_cuda(rng, case, op):
    p = problem(rng, case)
    primitive, actual = call_op(op, p, list(case[2]), padding_arg(case[4], "NHWC"), "NHWC",
                                list(case[3]), device="cuda")
    assert_matches(actual, expected_in_format(p, primitive, "NHWC"), np.float32)


# Every knob of the tile kernel, at 16 threads a block: thread tiles of each aspect,
# reduction steps shorter and longer than the reduction, split-K both ways.
SCHEDULES = [
    CudaSchedule((8, 8), (2, 2), 4),
    CudaSchedule((16, 8), (4, 2), 16),
    CudaSchedule((8, 16), (2, 4), 2),
    CudaSchedule((4, 4), (1, 1), 32),
]
SPLIT_SCHEDULES = [
    CudaSchedule((8, 8), (2, 2), 4, split_k=3),
    CudaSchedule((8, 8), (2, 2), 4, split_k=3, reduction="atomic"),
]
PRIMITIVE_OPS = {"forward": "conv2d", "backward_data": "conv2d_backprop_input",
                 "backward_filter": "conv2d_backprop_filter"}


def build_call(op, p, data_format="NHWC", dilations=(1, 2), strides=(2, 1), padding="SAME",
               **extra):
    """The checked call of ``op`` on ``p``, to run with a chosen schedule."""
    x, dy = to_format(p.x, data_format), to_format(p.dy, data_format)
    options = dict(strides=list(strides), padding=padding, data_format=data_format,
                   dilations=list(dilations), **extra)
    if op == "conv2d":
        return call_for("conv2d", x, p.w, **options)
    if op == "conv2d_backprop_input":
        return call_for(op, shape_in(p.x.shape, data_format), p.w, dy, **options)
    return call_for(op, x, p.w.shape, dy, **options)


@pytest.mark.parametrize("primitive, schedule", [
    *((primitive, schedule) for primitive in PRIMITIVE_OPS for schedule in SCHEDULES),
    *(("backward_filter", schedule) for schedule in SPLIT_SCHEDULES)], ids=str)
def test_every_schedule_computes_the_same_function(rng, primitive, schedule):
    p = problem(rng)
    call = build_call(PRIMITIVE_OPS[primitive], p, device="cuda")
    assert_matches(call.run(schedule), p.expected(primitive), np.float32)


def test_two_pass_split_k_is_deterministic(rng):
    p = problem(rng)
    call = build_call("conv2d_backprop_filter", p, device="cuda")
    first, second = (call.run(SPLIT_SCHEDULES[0]) for _ in range(2))
    assert np.array_equal(first, second)


@pytest.mark.parametrize("schedule, reason", [
    (CudaSchedule((64, 64), (1, 1)), "threads per block"),
    (CudaSchedule((128, 128), (8, 8), block_k=64), "shared memory"),
    (CudaSchedule((8, 8), (2, 2), split_k=2), "backward_filter only"),
    (CudaSchedule((8, 8), (2, 2), split_k=500), "no work"),
], ids=["threads", "shared", "split_forward", "split_too_deep"])
def test_illegal_schedules_are_named(schedule, reason):
    primitive = "backward_filter" if reason == "no work" else "forward"
    g = conv_geometry(*SMALL[:2], SMALL[2], SMALL[3], SMALL[4])
    assert reason in illegal_reason(primitive, g, schedule, 4)


def test_illegal_schedule_is_refused_before_any_kernel(rng):
    call = build_call("conv2d", problem(rng), device="cuda")
    with pytest.raises(ValueError, match="threads per block"):
        call.run(CudaSchedule((64, 64), (1, 1)))


def test_bad_schedule_knobs_raise():
    with pytest.raises(ValueError, match="thread_tile"):
        CudaSchedule((8, 8), (3, 2))
    with pytest.raises(ValueError, match="reduction"):
        CudaSchedule(reduction="tree")


# --- dispatch: where a call runs and what it returns --------------------------------

def test_device_arrays_in_give_a_device_array_out(rng):
    p = problem(rng)
    x, w = on_device(p.x), on_device(p.w)
    out = nc.conv2d(x, w, [2, 1], "SAME", dilations=[1, 2])
    assert runtime.is_device_array(out)
    assert_matches(out.copy_to_host(), p.expected("forward"), np.float32)


def test_device_arrays_are_not_written(rng):
    p = problem(rng)
    x, dy = on_device(p.x), on_device(p.dy)
    nc.conv2d_backprop_filter(x, p.w.shape, dy, [2, 1], "SAME", dilations=[1, 2])
    assert np.array_equal(x.copy_to_host(), p.x) and np.array_equal(dy.copy_to_host(), p.dy)


def test_mixed_numpy_and_device_operands_run_on_cuda(rng):
    p = problem(rng)
    out = nc.conv2d_backprop_input(p.x.shape, on_device(p.w), p.dy, [2, 1], "SAME",
                                   dilations=[1, 2])
    assert runtime.is_device_array(out)
    assert_matches(out.copy_to_host(), p.expected("backward_data"), np.float32)


def test_device_cpu_forces_the_cpu_for_device_arrays(rng):
    p = problem(rng)
    out = nc.conv2d(on_device(p.x), on_device(p.w), [2, 1], "SAME", dilations=[1, 2],
                    device="cpu")
    assert isinstance(out, np.ndarray)
    assert_matches(out, p.expected("forward"), np.float32)


@pytest.mark.parametrize("layout", ["fortran", "strided", "negative"])
def test_any_numpy_layout_runs_on_cuda(rng, layout):
    p = problem(rng)
    x = {"fortran": np.asfortranarray(p.x),
         "strided": np.repeat(p.x, 2, axis=3)[..., ::2],
         "negative": p.x[::-1][::-1]}[layout]
    out = nc.conv2d(x, np.asfortranarray(p.w), [2, 1], "SAME", dilations=[1, 2],
                    device="cuda")
    assert_matches(out, p.expected("forward"), np.float32)


def test_empty_output_on_cuda_is_a_zero_sized_device_array(rng):
    w = on_device(random(rng, (3, 3, 2, 4), np.float32))
    out = nc.conv2d(on_device(np.zeros((0, 5, 5, 2), np.float32)), w, 1, "SAME")
    assert runtime.is_device_array(out) and out.shape == (0, 5, 5, 4)


@pytest.mark.parametrize("shape, data_format, axis", [
    ((2, 3, 4, 5), "NHWC", -1), ((2, 5, 3, 4), "NCHW", 1), ((7, 3), "NHWC", -1),
    ((2, 1, 3, 2, 2), "NCHW", -3)], ids=["nhwc", "nchw", "rank2", "rank5_nchw"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_bias_add_grad_on_cuda(rng, shape, data_format, axis, dtype):
    dy = random(rng, shape, dtype)
    out = nc.bias_add_grad(on_device(dy), data_format=data_format)
    assert runtime.is_device_array(out)
    assert_matches(out.copy_to_host(), ref.bias_add_grad(dy, axis), dtype)


def test_bias_add_grad_nan_stays_in_its_channel_on_cuda(rng):
    dy = random(rng, (2, 3, 3, 4), np.float32)
    dy[0, 0, 0, 0] = np.nan
    out = nc.bias_add_grad(dy, device="cuda")
    assert np.isnan(out[0]) and np.all(np.isfinite(out[1:]))


def test_bias_add_grad_numpy_on_cuda_returns_numpy(rng):
    dy = random(rng, (3, 4, 4, 6), np.float32)
    out = nc.bias_add_grad(dy, device="cuda")
    assert isinstance(out, np.ndarray)
    assert_matches(out, ref.bias_add_grad(dy, -1), np.float32)


# --- schedules: default, tuned, explained --------------------------------------------

def test_explain_shows_the_cuda_schedule_and_its_source(rng):
    p = problem(rng)
    text = str(nc.explain("conv2d", p.x, p.w, [2, 1], "SAME", dilations=[1, 2], device="cuda"))
    assert "cuda" in text and "block" in text and "default heuristic" in text


def test_a_tuned_cuda_entry_is_used(rng, tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBACONV_CONFIG_DIR", str(tmp_path))
    configs.forget()
    p = problem(rng)
    g = conv_geometry(p.x.shape, p.w.shape, [2, 1], [1, 2], "SAME")
    tuned = CudaSchedule((8, 16), (2, 4), 2)
    entry = configs.make_entry("forward", "float32", g, tuned, 1e-3, 2e-3)
    configs.save_entries(configs.user_config_path("cuda"),
                         {configs.entry_key("forward", "float32", g): entry}, device="cuda")
    explanation = nc.explain("conv2d", p.x, p.w, [2, 1], "SAME", dilations=[1, 2],
                             device="cuda")
    assert explanation.choice.schedule == tuned
    assert "tuned" in explanation.choice.source
    assert_matches(nc.conv2d(p.x, p.w, [2, 1], "SAME", dilations=[1, 2], device="cuda"),
                   p.expected("forward"), np.float32)


@pytest.mark.parametrize("primitive", PRIMITIVE_OPS)
@pytest.mark.parametrize("shape", [
    ((1, 8, 8, 4), (3, 3, 4, 4)), ((32, 56, 56, 64), (3, 3, 64, 64)),
    ((32, 7, 7, 512), (3, 3, 512, 512)), ((8, 224, 224, 3), (7, 7, 3, 64))],
    ids=["tiny", "res2", "res5", "stem"])
def test_default_schedules_are_legal(primitive, shape):
    g = conv_geometry(shape[0], shape[1], (1, 1), (1, 1), "SAME")
    for itemsize in (4, 8):
        assert illegal_reason(primitive, g, default_schedule(primitive, g, itemsize),
                              itemsize) is None


def test_cuda_unavailable_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(runtime, "unavailable_reason", lambda: "no GPU here")
    x = np.ones((1, 4, 4, 2), np.float32)
    with pytest.raises(RuntimeError, match=r"device='cuda' was requested.*no GPU here"):
        nc.conv2d(x, np.ones((3, 3, 2, 2), np.float32), 1, "SAME", device="cuda")


# --- streams: which CUDA stream a foreign array's producer uses ----------------------

class ForeignArray:
    """Something exposing ``__cuda_array_interface__`` version 3 (as CuPy does)."""

    def __init__(self, stream):
        self.__cuda_array_interface__ = {"shape": (2,), "typestr": "<f4", "data": (0, False),
                                         "version": 3, "stream": stream}


def test_a_foreign_array_is_a_device_array():
    assert runtime.is_device_array(ForeignArray(None))
    assert not runtime.is_device_array(np.ones(2))


@pytest.mark.parametrize("stream, handle", [(None, None), (1, 1), (2, 2), (0x7F00, 0x7F00)])
def test_stream_of_a_foreign_array_comes_from_its_interface(stream, handle):
    assert runtime.stream_handle(ForeignArray(stream)) == handle


# --- tuning: the same verify-then-time loop, on CUDA --------------------------------

TINY_SPACE = {"cuda": {"implicit_gemm": {"tiles": [[8, 8, 2, 2], [16, 8, 4, 2]], "block_k": [8],
                                         "split_k": [2], "reduction": ["two_pass", "atomic"]}}}


def test_cuda_tuner_verifies_rejects_and_caches(tmp_path, monkeypatch):
    from numbaconv.cuda import launch
    from numbaconv.tune import tuner
    from numbaconv.tune.backends import CudaBackend
    from numbaconv.workloads import Layer

    honest = launch.run

    def sabotaged(primitive, first, second, g, schedule, *rest):
        result = honest(primitive, first, second, g, schedule, *rest)
        if schedule.reduction == "atomic":  # one candidate computes the wrong function
            host = result.copy_to_host() + 1.0
            result = cuda.to_device(host)
        return result

    monkeypatch.setattr(launch, "run", sabotaged)
    layer = Layer("tiny", conv_geometry((1, 4, 5, 3), (3, 3, 3, 4), (1, 1), (1, 1), "SAME"))
    backend = CudaBackend()
    outcome = tuner.tune_one(layer, "backward_filter", "float32", TINY_SPACE,
                             deadline=float("inf"), repeats=1, log=lambda line: None,
                             backend=backend)
    assert [s.reduction for s, reason in outcome.rejected] == ["atomic"]
    assert outcome.best is not None and outcome.best.reduction == "two_pass"
    monkeypatch.setenv("NUMBACONV_CONFIG_DIR", str(tmp_path))
    configs.forget()
    tuner.save_outcome(outcome, configs.user_config_path("cuda"), backend)
    tuned = configs.lookup("backward_filter", "float32", layer.geometry, device="cuda")
    assert tuned is not None and tuned.schedule == outcome.best
    assert tuned.path.name == "cudasim.yaml"


@pytest.mark.parametrize("op", ["conv2d", "conv2d_backprop_input", "conv2d_backprop_filter"])
def test_float16_device_arrays_compute_in_float32_and_come_back_float16(rng, op):
    """The CPU's float16 result: both sum in float32 (in their own orders) and round once."""
    p = problem(rng)
    x, w, dy = (a.astype(np.float16) for a in (p.x, p.w, p.dy))
    calls = {"conv2d": lambda d, *a: nc.conv2d(a[0], a[1], [2, 1], "SAME", dilations=[1, 2],
                                               device=d),
             "conv2d_backprop_input": lambda d, *a: nc.conv2d_backprop_input(
                 x.shape, a[1], a[2], [2, 1], "SAME", dilations=[1, 2], device=d),
             "conv2d_backprop_filter": lambda d, *a: nc.conv2d_backprop_filter(
                 a[0], w.shape, a[2], [2, 1], "SAME", dilations=[1, 2], device=d)}
    on_cpu = calls[op]("cpu", x, w, dy)
    out = calls[op](None, on_device(x), on_device(w), on_device(dy))
    assert runtime.is_device_array(out) and out.dtype == np.float16
    np.testing.assert_allclose(out.copy_to_host().astype(np.float32), on_cpu.astype(np.float32),
                               rtol=2e-3, atol=2e-3)


def test_host_bfloat16_on_cuda_returns_bfloat16(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    p = problem(rng)
    x, w = p.x.astype(ml_dtypes.bfloat16), p.w.astype(ml_dtypes.bfloat16)
    out = nc.conv2d(x, w, [2, 1], "SAME", dilations=[1, 2], device="cuda")
    assert isinstance(out, np.ndarray) and out.dtype == ml_dtypes.bfloat16
    np.testing.assert_allclose(out.astype(np.float32),
                               nc.conv2d(x, w, [2, 1], "SAME", dilations=[1, 2]).astype(np.float32),
                               rtol=1e-2, atol=1e-2)


def test_what_runs_on_the_cpu_only_says_so(rng):
    x = np.ones((1, 5, 5, 4), np.float32)
    with pytest.raises(TypeError, match=r"int32 runs on the CPU only"):
        nc.conv2d(x.astype(np.int32), np.ones((3, 3, 4, 4), np.int32), 1, "SAME", device="cuda")


GROUPED_SCHEDULES = [None, CudaSchedule((32, 32), (4, 4), 8, split_k=2),
                     CudaSchedule((32, 32), (4, 4), 8, split_k=2, reduction="atomic")]


@pytest.mark.parametrize("schedule", GROUPED_SCHEDULES, ids=["default", "split2", "atomic2"])
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("filter_shape", [(3, 2, 2, 9), (2, 3, 1, 12)],
                         ids=["3_groups", "depthwise_M2"])
def test_grouped_convolutions_on_cuda(rng, filter_shape, data_format, schedule):
    """A block never spans two groups: each group's GEMM in its own column blocks."""
    import reference as ref

    x = rng.standard_normal((2, 5, 6, 6)).astype(np.float32)
    w = rng.standard_normal(filter_shape).astype(np.float32)
    pads = ref.pads_for("SAME", (5, 6), filter_shape[:2], (2, 1), (1, 2))
    args = ((2, 1), (1, 2), pads)
    y = ref.grouped_conv2d(x, w, *args)
    dy = rng.standard_normal(y.shape).astype(np.float32)

    def fmt(a):
        return np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if data_format == "NCHW" else a

    options = dict(strides=[2, 1], padding="SAME", dilations=[1, 2], data_format=data_format,
                   device="cuda")
    calls = {"forward": (nc.call_for("conv2d", fmt(x), w, **options), fmt(y)),
             "backward_data": (nc.call_for("conv2d_backprop_input", fmt(x).shape, w, fmt(dy),
                                           **options),
                               fmt(ref.grouped_conv2d_backprop_input(x.shape, w, dy, *args))),
             "backward_filter": (nc.call_for("conv2d_backprop_filter", fmt(x), w.shape, fmt(dy),
                                             **options),
                                 ref.grouped_conv2d_backprop_filter(x, w.shape, dy, *args))}
    for primitive, (call, expected) in calls.items():
        if schedule is not None and primitive != "backward_filter":
            continue
        assert_matches(call.run(schedule), expected, np.float32)


def test_depthwise_ops_on_cuda_match_the_cpu(rng):
    x = rng.standard_normal((1, 7, 6, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 4, 2)).astype(np.float32)
    y = nc.depthwise_conv2d(x, w, [1, 2, 2, 1], "SAME")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    pairs = [(nc.depthwise_conv2d(on_device(x), on_device(w), [1, 2, 2, 1], "SAME"), y),
             (nc.depthwise_conv2d_backprop_input(x.shape, on_device(w), on_device(dy), 2, "SAME"),
              nc.depthwise_conv2d_backprop_input(x.shape, w, dy, 2, "SAME")),
             (nc.depthwise_conv2d_backprop_filter(on_device(x), w.shape, on_device(dy), 2,
                                                  "SAME"),
              nc.depthwise_conv2d_backprop_filter(x, w.shape, dy, 2, "SAME"))]
    for on_gpu, on_cpu in pairs:
        assert runtime.is_device_array(on_gpu)
        np.testing.assert_allclose(on_gpu.copy_to_host(), on_cpu, rtol=1e-5, atol=1e-5)
