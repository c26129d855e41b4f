"""Inside real programs: a bounded number of compiled variants and flat memory whatever the
shapes, and an interrupted tuner that keeps what it finished."""

import os
import signal
import subprocess
import sys
import textwrap

import yaml

from numbaconv import configs

STREAM = textwrap.dedent("""
    import numpy as np, numbaconv as nc
    from numbaconv.cpu import bias, codegen, gemm, layout, partials
    from numbaconv.cpu.direct import backward_data, backward_filter, forward

    def rss_mib():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4096 / 2**20

    def kernels_needed(explanation):  # the generated kernel a schedule runs, or None
        schedule = explanation.choice.schedule
        if schedule.algorithm == "gemm":
            return ("forward", gemm.tiled_matmul_tile(4))
        if schedule.algorithm != "tiled":
            return None
        panels = schedule.loop_order == "packed_panels"
        if explanation.call.primitive == "backward_filter":
            return ("wgrad panels" if panels else "wgrad", schedule.register_tile)
        return ("panels" if panels else "forward", schedule.register_tile)

    needed = set()
    rng = np.random.default_rng(0)
    channels = [1, 3, 5, 8, 12, 16, 24, 32]  # multiples of 8 reach the register tiles
    for shape in range({count}):
        n, h, w = (int(v) for v in rng.integers(1, [3, 16, 16]))
        c, k = (int(v) for v in rng.choice(channels, 2))
        r, s = (int(v) for v in rng.integers(1, 4, 2))
        stride, dilation = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        x = rng.standard_normal((n, h, w, c)).astype(np.float32)
        f = rng.standard_normal((r, s, c, k)).astype(np.float32)
        y = nc.conv2d(x, f, stride, "SAME", dilations=dilation)
        nc.conv2d_backprop_input(x.shape, f, y, stride, "SAME", dilations=dilation)
        nc.conv2d_backprop_filter(x, f.shape, y, stride, "SAME", dilations=dilation)
        needed |= {kernels_needed(nc.explain("conv2d", x, f, stride, "SAME", dilations=dilation)),
                   kernels_needed(nc.explain("conv2d_backprop_input", x.shape, f, y, stride,
                                             "SAME", dilations=dilation)),
                   kernels_needed(nc.explain("conv2d_backprop_filter", x, f.shape, y, stride,
                                             "SAME", dilations=dilation))} - {None}
        nc.bias_add_grad(y)
        if (shape + 1) % 25 == 0:
            print(f"rss after {shape + 1} {rss_mib():.1f} MiB", flush=True)
    kernels = [forward.forward_direct, backward_data.backward_data_direct,
               backward_filter.backward_filter_direct, partials.sum_partials,
               bias.bias_grad_direct, gemm.im2col, gemm.col2im, layout.pad_rows_kernel,
               layout.pack_filter_kernel, layout.swap_channels_kernel]
    print("most signatures per kernel", max(len(k.signatures) for k in kernels))
    print("generated kernels the schedules need", len(needed))
    print("generated variants", codegen.compiled_variants())
""")

def run_stream(count: int) -> tuple[str, dict]:
    """``count`` random float32 geometries through every op in a fresh process: its output
    and resident memory (MiB) after every 25 geometries."""
    result = subprocess.run([sys.executable, "-c", STREAM.replace("{count}", str(count))],
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    rss = {int(line.split()[2]): float(line.split()[3])
           for line in result.stdout.splitlines() if line.startswith("rss after")}
    return result.stdout, rss


def test_300_geometries_compile_a_bounded_set_of_variants_and_memory_stops_growing():
    """One signature per kernel (inputs are always read-only, C-contiguous views), generated
    variants no more than the distinct kernels the chosen schedules need (none per
    geometry), and a flat resident-memory curve once they exist.
    The curve: ``pytest -s -k 300_geometries tests/test_robustness.py``."""
    out, rss = run_stream(300)
    print(out)
    assert "most signatures per kernel 1" in out
    needed = int(out.split("generated kernels the schedules need")[1].split()[0])
    assert 0 < int(out.split("generated variants")[1]) <= needed
    assert rss[300] - rss[150] < 8, rss  # MiB over the last 150 geometries


#: Enough that the tuner is still at work when the interrupt arrives.
LAYERS = 12


def test_interrupted_tuner_keeps_finished_results(tmp_path, small_space):
    workload = tmp_path / "w.yaml"
    workload.write_text("\n".join(
        f"- {{name: l{i}, N: 1, H: {8 + i}, W: 9, C: 8, K: 16, R: 3, S: 3, strides: 1, "
        f"padding: SAME, dilations: 1}}" for i in range(LAYERS)))
    # A shell runs background jobs with SIGINT ignored, and the child would inherit that:
    # give it the default disposition, as a terminal's foreground process has.
    tuner = subprocess.Popen([sys.executable, "-m", "numbaconv.tune", "--workload", str(workload),
                              "--config-dir", str(tmp_path), "--repeats", "2",
                              "--space", str(small_space), "--no-calibrate"],
                             stdout=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in tuner.stdout:
        if line.startswith("[2/"):
            break
    tuner.send_signal(signal.SIGINT)
    out, _ = tuner.communicate(timeout=300)
    assert tuner.returncode == 0
    assert "interrupted: every result above is saved" in out
    data = yaml.safe_load((tmp_path / f"{configs.device_info('cpu')['key']}.yaml").read_text())
    assert 2 <= len(data["entries"]) < 3 * LAYERS
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
