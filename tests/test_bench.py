"""The benchmark's quick mode (every op's per-call cost on a tiny layer), and how its
passes back to back take turns with PyTorch's."""

import re

import numpy as np
import pytest

from numbaconv import bench
from numbaconv.api import call_for
from numbaconv.cpu import half
from numbaconv.cpu.winograd import filter_cache
from numbaconv.geometry import conv_geometry

OPS = bench.overhead_calls(np.random.default_rng(0))


def test_overhead_calls_are_valid_calls_of_their_ops():
    for op, arguments in OPS.items():
        assert call_for(op, *arguments).run().size > 0


def test_overhead_report_lists_every_op_with_both_costs(capsys):
    assert bench.main(["--overhead", "--rounds", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for op in OPS:
        rows = [line for line in lines if line.split()[:1] == [op]]
        assert len(rows) == 1, op
        call, full = (float(value) for value in re.findall(r"\d+\.\d", rows[0]))
        assert call > 0 and full > 0


@pytest.mark.quiet  # one round's time ratios: another test's load would swing them
def test_half_report_gives_each_half_type_over_float32_per_layer(capsys):
    assert bench.main(["--half", "--select", "res5_3x3_s2", "--batch", "1", "--rounds", "1",
                       "--ops", "forward,backward_filter"]) == 0
    lines = capsys.readouterr().out.splitlines()
    halves = list(half.available_types())
    assert lines[1].split()[-len(halves):] == halves
    rows = [line.split() for line in lines if line.startswith("res5_3x3_s2")]
    assert [row[1] for row in rows] == ["forward", "backward_filter"]
    for row in rows:
        float32_ms, *ratios = (float(value) for value in row[2:])
        assert float32_ms > 0 and len(ratios) == len(halves)
        assert all(0.1 < ratio < 10 for ratio in ratios)
    means = [line for line in lines if line.strip().startswith("forward")][-1]
    assert all(name in means for name in halves)


def test_passes_back_to_back_take_turns_with_the_other_side(monkeypatch):
    """Each timed pass of ours is followed by one of theirs, after warm untimed passes of
    ours: a slow spell of the machine hits both sides."""
    monkeypatch.setattr(bench, "SETTLE_SECONDS", 0.0)
    events = []
    calls = [lambda: events.append("first"), lambda: events.append("second")]

    def theirs():
        events.append("theirs")
        return 0.5, [0.2, 0.3]

    ours, found = bench.in_sequence(calls, theirs)
    assert found == bench.PassTimes(0.5, (0.2, 0.3)) and 0 < ours.total < 0.5
    assert len(ours.calls) == 2 and 0 < sum(ours.calls) <= ours.total
    assert events.count("theirs") == bench.SEQUENCE_PASSES
    turns = "".join("t" if event == "theirs" else "o" for event in events if event != "second")
    assert turns.startswith("oo") and "tt" not in turns and turns.endswith("ot")
    assert bench.in_sequence(calls)[1] is None


def test_pass_times_are_medians_of_the_totals_and_of_each_call():
    passes = [(1.0, [0.4, 0.5]), (3.0, [0.1, 2.8]), (2.0, [0.9, 1.0])]
    assert bench.PassTimes.of(passes) == bench.PassTimes(2.0, (0.4, 1.0))


def test_pass_layers_gives_each_layer_in_the_passes_beside_its_time_alone(
        tmp_path, monkeypatch, capsys):
    workload = tmp_path / "two.yaml"
    workload.write_text(
        "- {name: first, N: 1, H: 9, W: 10, C: 8, K: 16, R: 3, S: 3, strides: 1, "
        "padding: SAME, dilations: 1}\n"
        "- {name: second, N: 1, H: 6, W: 5, C: 16, K: 8, R: 1, S: 1, strides: 1, "
        "padding: VALID, dilations: 1}\n")
    monkeypatch.setattr(bench, "SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(bench, "fma_peak", lambda: 100.0)  # no calibration here
    assert bench.main(["--workload", str(workload), "--ops", "forward", "--rounds", "1",
                       "--no-torch", "--pass-layers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in ("first", "second"):
        rows = [line for line in lines if line.split()[:3] == [name, "in", "the"]]
        assert len(rows) == 1, name
        in_passes, alone = (float(value) for value in re.findall(r"\d+\.\d+", rows[0]))
        assert in_passes > 0 and alone > 0


def test_calls_find_their_filter_changed_unless_same_filters_is_asked():
    """Training by default (Winograd's kept transforms made again on every call, so
    Winograd over the chosen schedule never runs), inference with ``--same-filters``."""
    assert bench.parse_args(["--same-filters"]).same_filters
    assert not bench.parse_args([]).same_filters
    layer = bench.Layer("winograd_sized", conv_geometry((1, 8, 8, 64), (3, 3, 64, 64),
                                                         (1, 1), (1, 1), "SAME"))
    for same_filters, hits_expected in ((False, 0), (True, 2)):
        x, w, dy = bench._inputs(layer, np.random.default_rng(0))
        as_called, _ = bench.op_calls("forward", layer, x, w, dy, same_filters)
        before = filter_cache.statistics()["hits"]
        for _ in range(5):  # watched, bits kept, transform made, then reused
            as_called()
        assert filter_cache.statistics()["hits"] - before == hits_expected
