"""The benchmark's quick mode (every op's per-call cost on a tiny layer), and how its
passes back to back take turns with PyTorch's."""

import re

import numpy as np

from numbaconv import bench
from numbaconv.api import call_for

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


def test_passes_back_to_back_take_turns_with_the_other_side(monkeypatch):
    """Each timed pass of ours is followed by one of theirs, after warm untimed passes of
    ours: a slow spell of the machine hits both sides."""
    monkeypatch.setattr(bench, "SETTLE_SECONDS", 0.0)
    events = []
    calls = [lambda: events.append("first"), lambda: events.append("second")]

    def theirs():
        events.append("theirs")
        return 0.5

    ours, found = bench.in_sequence(calls, theirs)
    assert found == 0.5 and 0 < ours < 0.5
    assert events.count("theirs") == bench.SEQUENCE_PASSES
    turns = "".join("t" if event == "theirs" else "o" for event in events if event != "second")
    assert turns.startswith("oo") and "tt" not in turns and turns.endswith("ot")
    assert bench.in_sequence(calls)[1] is None
