"""The tuner: verify-then-time on a tiny workload, a rejected candidate is never cached,
and a new process uses what was tuned."""

import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from numbaconv import configs
from numbaconv.cpu import calibration, depthwise, half, winograd
from numbaconv.cpu.families import CPU
from numbaconv.cpu.rule import rule
from numbaconv.machine import this_machine
from numbaconv.primitives import NAMES as PRIMITIVES
from numbaconv.tune import tuner
from numbaconv.tune.backends import CpuBackend
from numbaconv.tune.space import load_space
from numbaconv.workloads import WORKLOAD_DIR, load_workload

TINY = textwrap.dedent("""\
    - {name: tiny_3x3, N: 1, H: 9, W: 10, C: 8, K: 16, R: 3, S: 3, strides: 1, padding: SAME, dilations: 1}
    - {name: tiny_1x1_s2, N: 2, H: 7, W: 6, C: 16, K: 8, R: 1, S: 1, strides: 2, padding: VALID, dilations: 1}
    """)


def run_python(code, env_extra, timeout=600):
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_tune_cli_round_trip(tmp_path, small_space):
    workload = tmp_path / "tiny.yaml"
    workload.write_text(TINY)
    out = tmp_path / "configs"
    env = {configs.CONFIG_ENV: str(out)}
    tuned = subprocess.run([sys.executable, "-m", "numbaconv.tune", "--workload", str(workload),
                            "--budget", "120", "--repeats", "2", "--space", str(small_space),
                            "--no-calibrate"],
                           capture_output=True, text=True, env=dict(os.environ, **env),
                           timeout=900)
    assert tuned.returncode == 0, tuned.stderr
    assert "speed-up" in tuned.stdout and "[6/6]" in tuned.stdout
    data = yaml.safe_load((out / f"{configs.device_info('cpu')['key']}.yaml").read_text())
    assert len(data["entries"]) == 6
    assert {e["op"] for e in data["entries"].values()} == set(PRIMITIVES)
    explained = run_python(
        "import numpy as np, numbaconv as nc\n"
        "x = np.ones((1, 9, 10, 8), np.float32); w = np.ones((3, 3, 8, 16), np.float32)\n"
        "print(nc.explain('conv2d', x, w, 1, 'SAME'))", env)
    assert f"tuned: {out}" in explained.stdout, explained.stderr


def test_budget_is_respected(tmp_path):
    workload = tmp_path / "tiny.yaml"
    workload.write_text(TINY)
    result = subprocess.run([sys.executable, "-m", "numbaconv.tune", "--workload", str(workload),
                             "--budget", "0.001", "--config-dir", str(tmp_path),
                             "--no-calibrate"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0
    assert "budget spent" in result.stdout


def test_wrong_candidate_is_rejected_and_never_cached(tmp_path, monkeypatch):
    layer = load_workload_text(tmp_path, TINY)[0]
    honest = CpuBackend.runner

    def sabotaged(self, primitive, g, schedule, dtype):
        run = honest(self, primitive, g, schedule, dtype)
        if schedule.algorithm != "gemm":
            return run
        return lambda operands: run(operands) + 1.0

    monkeypatch.setattr(CpuBackend, "runner", sabotaged)
    # the direct loops and im2col + matmul: a gemm candidate and honest ones, no more to compile
    space = {"cpu": {"direct": {"loop_order": ["pixel_tap_channel"]},
                     "gemm": {"matmul": ["tiled"]}}}
    outcome = tuner.tune_one(layer, "forward", "float32", space, deadline=float("inf"),
                             repeats=1, log=lambda line: None)
    assert [s.algorithm for s, _ in outcome.rejected] == ["gemm"]
    assert outcome.best.algorithm != "gemm"
    path = tmp_path / "out.yaml"
    tuner.save_outcome(outcome, path)
    saved = yaml.safe_load(path.read_text())["entries"]
    assert [CPU.parse(e["schedule"]).algorithm != "gemm" for e in saved.values()] == [True]


def test_a_problem_timed_while_other_work_held_the_cores_keeps_the_default(tmp_path,
                                                                         monkeypatch):
    """Every finalists' pass crowded: whatever won there, the rule's schedule is kept."""
    layer = load_workload_text(tmp_path, TINY)[0]
    monkeypatch.setattr(tuner, "crowded", lambda other_cores, threads: True)
    monkeypatch.setattr(tuner, "CROWDED_PAUSE", 0.0)
    monkeypatch.setattr(tuner, "KEEP_DEFAULT_WITHIN", 0.0)  # else the default may win anyway
    space = {"cpu": {"direct": {"loop_order": ["pixel_tap_channel", "tap_channel_pixel"]}}}
    outcome = tuner.tune_one(layer, "forward", "float32", space, deadline=float("inf"),
                             repeats=1, log=lambda line: None)
    assert outcome.timed == 3
    assert outcome.crowded and outcome.best == outcome.default


def test_finalists_are_timed_after_the_caches_are_swept(tmp_path, monkeypatch):
    """Each of the finalists' timed calls comes after a sweep of the caches, as a layer
    finds them within a network's pass; the candidates' first timings come without."""
    layer = load_workload_text(tmp_path, TINY)[0]
    events = []
    monkeypatch.setattr(CpuBackend, "evict_caches", lambda self: events.append("swept"))
    honest = CpuBackend.runner

    def noting(self, primitive, g, schedule, dtype):
        run = honest(self, primitive, g, schedule, dtype)
        return lambda operands: (events.append("call"), run(operands))[1]

    monkeypatch.setattr(CpuBackend, "runner", noting)
    space = {"cpu": {"direct": {"loop_order": ["pixel_tap_channel", "tap_channel_pixel"]}}}
    outcome = tuner.tune_one(layer, "forward", "float32", space, deadline=float("inf"),
                             repeats=1, log=lambda line: None)
    assert outcome.timed == 3
    first_sweep = events.index("swept")
    assert "call" in events[:first_sweep]  # the first timings come without
    # every sweep is followed by a timed call (warm-up calls come without)
    assert all(after == "call" for before, after in zip(events[first_sweep:],
                                                          events[first_sweep + 1:])
               if before == "swept")
    assert events.count("swept") >= 3 * 3 * 3  # 3 finalists, 3 rounds of 3 timed calls


def test_candidates_are_bounded_legal_and_start_with_the_default():
    layer = load_workload_text(None, TINY)[0]
    for primitive in PRIMITIVES:
        found, _ = CpuBackend().candidates(primitive, layer.geometry, 4, load_space())
        assert 3 <= len(found) <= 40
        assert len(set(found)) == len(found)


def load_workload_text(tmp_path, text):
    import tempfile
    from pathlib import Path
    directory = Path(tmp_path or tempfile.mkdtemp())
    path = directory / "w.yaml"
    path.write_text(text)
    return load_workload(path)


@pytest.mark.parametrize("workload", ["resnet50.yaml", "vgg16.yaml", "mobilenetv2.yaml",
                                      "resnext50.yaml"])
def test_rule_gives_register_tiles_wherever_channels_allow(workload):
    """The untuned default is legal for every shipped layer, and register-tiled wherever
    both channel counts are multiples of 8 (the im2col fallback is for RGB inputs) but on
    the Winograd family's layers (3×3 stride 1, large enough); the depthwise kernels for
    depthwise layers and (their vector tiles) for groups of a few channels in and out."""
    for layer in load_workload(WORKLOAD_DIR / workload):
        g = layer.geometry
        for primitive in PRIMITIVES:
            schedule = rule(primitive, g, 4, this_machine())
            assert CPU.illegal_reason(primitive, g, schedule) is None, (layer.name, primitive)
            pixels = g.batch * g.out_height * g.out_width
            if winograd.default(primitive, g, 4, this_machine()) is not None:
                assert schedule.algorithm == "winograd", (layer.name, primitive, schedule)
                assert (g.filter_height, g.filter_width, g.stride_h) == (3, 3, 1)
            elif g.is_depthwise or depthwise.grouped_default(primitive, g, 4, this_machine()):
                assert schedule.algorithm == "depthwise", (layer.name, primitive, schedule)
            elif g.groups > 1:  # register tiles within a group, even for 4 channels a group
                assert schedule.algorithm == "tiled", (layer.name, primitive, schedule)
            elif g.in_channels % 8 == 0 and g.out_channels % 8 == 0 and pixels >= 16:
                assert schedule.algorithm == "tiled", (layer.name, primitive, schedule)


def test_tune_calibrates_a_device_first_and_only_once(tmp_path, small_space):
    """The main job calibrates where the device has no calibration, and records it."""
    env = dict(os.environ, **{configs.CONFIG_ENV: str(tmp_path)})
    first = subprocess.run([sys.executable, "-m", "numbaconv.tune", "--calibrate"],
                           capture_output=True, text=True, env=env, timeout=900)
    assert first.returncode == 0, first.stderr
    assert "FMA peak" in first.stdout and "calibrated in" in first.stdout
    data = yaml.safe_load((tmp_path / f"{configs.device_info('cpu')['key']}.yaml").read_text())
    fma = data["calibration"]["fma"]
    assert fma["peak_gflops"] > 0 and 1 <= fma["chains_needed"] <= 16
    assert all(data["calibration"]["tiles"]["float32"][p] for p in PRIMITIVES)
    openmp = data["calibration"]["openmp"]
    assert openmp["spin_count"] in calibration.SPIN_COUNTS
    assert all(value > 0 for value in openmp["after_pause_us"].values())
    probed = data["calibration"]["half_panels"]
    assert set(probed) == {storage for storage in half.available_types()
                           if half.converts_in_kernels(storage)}
    for found in probed.values():  # the panels taken only where they beat the rows clearly
        assert found["rows_over_float32"] > 0 and found["panels_over_float32"] > 0
        assert found["panels_pay"] == (found["panels_over_float32"]
                                       * calibration.HALF_PANELS_MARGIN
                                       < found["rows_over_float32"])
    winograd = data["calibration"]["winograd_backward_filter"]  # the rule's gate
    assert winograd["winograd_over_tiles"] > 0
    assert winograd["pays"] == (winograd["winograd_over_tiles"]
                                * calibration.WINOGRAD_BACKWARD_FILTER_MARGIN < 1)
    workload = tmp_path / "tiny.yaml"
    workload.write_text(TINY.splitlines()[0] + "\n")
    again = subprocess.run([sys.executable, "-m", "numbaconv.tune", "--workload", str(workload),
                            "--ops", "forward", "--budget", "60", "--repeats", "1",
                            "--space", str(small_space)],
                           capture_output=True, text=True, env=env, timeout=900)
    assert again.returncode == 0, again.stderr
    assert "numbaconv calibrate:" not in again.stdout and "[1/1]" in again.stdout
