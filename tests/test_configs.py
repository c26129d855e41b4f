"""The YAML configuration cache: round trips, hostile or broken files, concurrent writers."""

import logging
import multiprocessing
import os

import numpy as np
import pytest
import yaml

import numbaconv as nc
from numbaconv import configs
from numbaconv.geometry import conv_geometry
from numbaconv.cpu.direct import DirectSchedule
from numbaconv.cpu.families import CPU
from numbaconv.cpu.gemm import GemmSchedule
from numbaconv.cpu.tiled import TiledSchedule

G = conv_geometry((1, 9, 9, 8), (3, 3, 8, 16), (1, 1), (1, 1), "SAME")
X = np.random.default_rng(0).standard_normal((1, 9, 9, 8)).astype(np.float32)
W = np.random.default_rng(1).standard_normal((3, 3, 8, 16)).astype(np.float32)
TUNED = TiledSchedule(loop_order="pixel_tiles_outer", register_tile=(2, 16), channel_block=16)


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(configs.CONFIG_ENV, str(tmp_path))
    configs.forget()
    yield tmp_path
    configs.forget()


def config_file(directory):
    return directory / f"{configs.device_info('cpu')['key']}.yaml"


def save_tuned(path, schedule=TUNED, g=G):
    entry = configs.make_entry("forward", "float32", g, schedule, 1e-3, 2e-3)
    configs.save_entries(path, {configs.entry_key("forward", "float32", g): entry})


def test_saved_entry_is_looked_up_and_explained(config_dir):
    save_tuned(config_file(config_dir))
    found = configs.lookup("forward", "float32", G)
    assert found.schedule == TUNED
    explanation = str(nc.explain("conv2d", X, W, 1, "SAME"))
    assert f"tuned: {config_file(config_dir)}" in explanation
    assert "register_tile=[2, 16]" in explanation


def test_other_dtype_or_geometry_is_not_an_exact_hit(config_dir):
    save_tuned(config_file(config_dir))
    assert configs.lookup("forward", "float64", G) is None
    other = conv_geometry((1, 9, 9, 8), (3, 3, 8, 16), (2, 2), (1, 1), "SAME")
    assert configs.lookup("forward", "float32", other) is None


def test_nearest_tuned_geometry_is_used_for_untuned_shapes(config_dir):
    save_tuned(config_file(config_dir))
    x = np.ones((1, 11, 11, 8), np.float32)
    explanation = str(nc.explain("conv2d", x, W, 1, "SAME"))
    assert "nearest tuned" in explanation and "register_tile=[2, 16]" in explanation


def test_file_change_is_picked_up(config_dir):
    path = config_file(config_dir)
    save_tuned(path)
    assert configs.lookup("forward", "float32", G).schedule == TUNED
    other = GemmSchedule(matmul="blas")
    save_tuned(path, other)
    assert configs.lookup("forward", "float32", G).schedule == other


BROKEN_FILES = {
    "garbage": "{{{{ not yaml ::::",
    "truncated": None,  # filled in by the test: half of a valid file
    "python_object_tag": "!!python/object/apply:os.system ['touch {marker}']\n",
    "foreign_device": None,
    "stale_numba": None,
    "wrong_format": "format: something-else\nentries: {}\n",
    "not_a_mapping": "- 1\n- 2\n",
    "malformed_entry": None,
}


@pytest.mark.parametrize("kind", BROKEN_FILES)
def test_broken_files_fall_back_to_the_heuristic(config_dir, tmp_path_factory, kind, caplog):
    path = config_file(config_dir)
    marker = tmp_path_factory.mktemp("marker") / "executed"
    save_tuned(path)
    good = yaml.safe_load(path.read_text())
    text = BROKEN_FILES[kind]
    if kind == "truncated":
        full = path.read_text()
        text = full[: len(full) // 2]
    elif kind == "foreign_device":
        good["device"]["key"] = "some-other-cpu-64c"
        text = yaml.safe_dump(good)
    elif kind == "stale_numba":
        good["numba"] = "0.1.0"
        text = yaml.safe_dump(good)
    elif kind == "malformed_entry":
        next(iter(good["entries"].values()))["schedule"] = {"algorithm": "warp_drive"}
        text = yaml.safe_dump(good)
    path.write_text(text.replace("{marker}", str(marker)))
    configs.forget()
    with caplog.at_level(logging.WARNING, logger="numbaconv"):
        explanation = str(nc.explain("conv2d", X, W, 1, "SAME"))
        result = nc.conv2d(X, W, 1, "SAME")
    assert "default heuristic" in explanation
    assert "ignoring config file" in caplog.text
    assert not marker.exists()
    expected = nc.conv2d(X.astype(np.float64), W.astype(np.float64), 1, "SAME")
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4)


def _writer(path, worker, count):
    for i in range(count):
        g = conv_geometry((1, 5 + i, 7, 8), (3, 3, 8, 8 * (worker + 1)), (1, 1), (1, 1), "SAME")
        configs.save_entries(path, {configs.entry_key("forward", "float32", g):
                                    configs.make_entry("forward", "float32", g, DirectSchedule(),
                                                       1e-3, 1e-3)})


def test_concurrent_writers_lose_no_entry(tmp_path):
    path = tmp_path / "shared.yaml"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, worker, 15)) for worker in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
        assert process.exitcode == 0
    entries = yaml.safe_load(path.read_text())["entries"]
    assert len(entries) == 4 * 15
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_device_key_names_cpu_simd_and_cores():
    device = configs.device_info("cpu")
    assert str(device["cores"]) + "c" in device["key"]
    assert all(feature in device["key"] for feature in device["simd"])


def test_shipped_config_files_are_valid():
    project_configs = configs.Path(configs.__file__).resolve().parent.parent / "configs"
    shipped = sorted(project_configs.glob("*.yaml"))
    assert shipped, "the project ships tuned defaults in configs/"
    for path in shipped:
        data = yaml.safe_load(path.read_text())
        assert data["format"] == configs.FORMAT
        assert data["entries"]
        for entry in data["entries"].values():
            CPU.parse(entry["schedule"])
            configs.ConvGeometry(**entry["geometry"])


def test_shipped_entry_keys_are_the_keys_derived_from_their_geometry():
    """Keys are derived from the geometry's fields: the shipped entries still match."""
    project_configs = configs.Path(configs.__file__).resolve().parent.parent / "configs"
    for path in sorted(project_configs.glob("*.yaml")):
        for key, entry in yaml.safe_load(path.read_text())["entries"].items():
            g = configs.ConvGeometry(**entry["geometry"])
            assert key == configs.entry_key(entry["op"], entry["dtype"], g), path


@pytest.mark.parametrize("written, expected", [
    ({"algorithm": "gemm", "loop_order": "im2col"}, GemmSchedule(matmul="blas")),
    ({"algorithm": "gemm", "loop_order": "im2col_tiled"}, GemmSchedule(matmul="tiled")),
    # The flat record of every knob that schedules once were: unused knobs are ignored.
    ({"algorithm": "direct", "loop_order": "tap_channel_pixel", "channel_block": 32,
      "register_tile": [4, 16], "in_channel_block": 8, "reduction_splits": 2},
     DirectSchedule("tap_channel_pixel", 32, 8, 2)),
    ({"algorithm": "tiled", "loop_order": "packed_panels", "channel_block": 16,
      "register_tile": [5, 16], "in_channel_block": 64, "reduction_splits": 1},
     TiledSchedule("packed_panels", 16, (5, 16), 1)),
], ids=["gemm-blas", "gemm-tiled", "direct", "tiled"])
def test_entries_an_earlier_version_wrote_are_migrated_on_read(written, expected):
    assert CPU.parse(written) == expected
    assert CPU.parse(expected.to_dict()) == expected


def test_a_cuda_entry_without_an_algorithm_is_an_implicit_gemm_one():
    from numbaconv.cuda.families import CUDA
    from numbaconv.cuda.schedule import CudaSchedule

    written = {"block_tile": [64, 32], "thread_tile": [4, 4], "block_k": 8, "split_k": 2,
               "reduction": "atomic"}
    assert CUDA.parse(written) == CudaSchedule((64, 32), (4, 4), 8, 2, "atomic")


def test_an_unknown_algorithm_is_rejected_by_name():
    with pytest.raises(ValueError, match="algorithm must be one of .*'fft'"):
        CPU.parse({"algorithm": "fft"})


def test_a_winograd_entry_round_trips():
    schedule = CPU.parse({"algorithm": "winograd", "output_tile": 2, "register_tile": [4, 32],
                          "chunk_tiles": 96})
    assert CPU.parse(schedule.to_dict()) == schedule and schedule.output_tile == 2
