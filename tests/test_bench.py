"""The benchmark's quick mode: every op's per-call cost on a tiny layer."""

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
