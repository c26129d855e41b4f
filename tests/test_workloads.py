"""Workload files: the shipped ones load; a bad entry is rejected naming entry and key."""

import pytest

from numbaconv.workloads import WORKLOAD_DIR, WorkloadError, load_workload

GOOD = "{name: ok, N: 1, H: 8, W: 8, C: 4, K: 4, R: 3, S: 3, strides: 1, padding: SAME, dilations: 1}"


@pytest.mark.parametrize("name", ["resnet50.yaml", "vgg16.yaml", "mobilenetv2.yaml",
                                  "resnext50.yaml"])
def test_shipped_workloads_load(name):
    layers = load_workload(WORKLOAD_DIR / name)
    assert layers and len({layer.name for layer in layers}) == len(layers)


@pytest.mark.parametrize("entry, message", [
    ("{name: a, N: 1, H: 8, W: 8, C: 4, K: 4, R: 3, S: 3, strides: 1, padding: SAME}",
     r"entry 1 \(a\): missing key 'dilations'"),
    ("{name: b, N: 1, H: eight, W: 8, C: 4, K: 4, R: 3, S: 3, strides: 1, padding: SAME, dilations: 1}",
     r"entry 1 \(b\): key 'H' must be an int"),
    ("{name: c, N: 1, H: 2, W: 8, C: 4, K: 4, R: 3, S: 3, strides: 1, padding: VALID, dilations: 1}",
     r"entry 1 \(c\): impossible geometry"),
    ("{name: d, N: 1, H: 8, W: 8, C: 4, K: 4, R: 3, S: 3, strides: 0, padding: SAME, dilations: 1}",
     r"entry 1 \(d\): key 'strides' must be >= 1"),
    ("{name: e, N: 1, H: 8, W: 8, C: 4, K: 4, R: 3, S: 3, strides: 1, padding: FULL, dilations: 1}",
     r"entry 1 \(e\): key 'padding'"),
    ("{name: f, N: 1, H: 8, W: 8, C: 4, K: 4, R: 3, S: 3, strides: 1, padding: SAME, dilations: 1, group: 2}",
     r"entry 1 \(f\): unknown key 'group'"),
    ("{name: g, N: 1, H: 8, W: 8, C: 4, K: 6, R: 3, S: 3, strides: 1, padding: SAME, dilations: 1, groups: 4}",
     r"entry 1 \(g\): key 'groups' \(4\) must divide C \(4\) and K \(6\)"),
    ("[1, 2]", r"entry 1 must be a mapping"),
])
def test_bad_entry_is_named(tmp_path, entry, message):
    path = tmp_path / "w.yaml"
    path.write_text(f"- {GOOD}\n- {entry}\n")
    with pytest.raises(WorkloadError, match=message):
        load_workload(path)


def test_grouped_and_depthwise_layers():
    resnext = load_workload(WORKLOAD_DIR / "resnext50.yaml")
    assert {layer.geometry.groups for layer in resnext} == {32}
    assert resnext[0].geometry.filter_shape == (3, 3, 4, 128)
    depthwise = [l for l in load_workload(WORKLOAD_DIR / "mobilenetv2.yaml") if "_dw_" in l.name]
    assert depthwise and all(layer.geometry.is_depthwise for layer in depthwise)


def test_python_tags_are_not_executed(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "w.yaml"
    path.write_text(f"- !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(WorkloadError, match="not valid YAML"):
        load_workload(path)
    assert not marker.exists()
