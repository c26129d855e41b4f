"""The package's structure: families behind one interface, one table of primitives, no
import cycles, no reaching into another module's private names."""

import ast
import dataclasses
import inspect
from pathlib import Path

import numpy as np
import pytest

import numbaconv
from numbaconv.cpu.families import CPU
from numbaconv.cpu.tiled import templates
from numbaconv.cuda.families import CUDA
from numbaconv.family import Family
from numbaconv.geometry import conv_geometry
from numbaconv.primitives import NAMES, PRIMITIVES, primitive, random_tensors
from numbaconv.schedule import Schedule

PACKAGE = Path(numbaconv.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph():
    """Module -> the numbaconv modules it imports (anywhere in it, functions included), and
    every ``from X import _name`` of another module's private name."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    edges, private = {name: set() for name in modules}, []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                targets = [(base, alias.name) for alias in node.names]
            else:
                continue
            for base, item in targets:
                if item and f"{base}.{item}" in modules:
                    edges[name].add(f"{base}.{item}")
                elif base in modules:
                    edges[name].add(base)
                    if item and item.startswith("_") and not item.startswith("__"):
                        private.append(f"{name} imports {base}.{item}")
    return edges, private


def test_no_module_imports_another_in_a_cycle():
    edges, _ = import_graph()
    done, on_path, cycles = set(), [], []

    def visit(module):
        on_path.append(module)
        for target in sorted(edges[module]):
            if target in on_path:
                cycles.append(" -> ".join(on_path[on_path.index(target):] + [target]))
            elif target not in done:
                visit(target)
        on_path.pop()
        done.add(module)

    for module in sorted(edges):
        if module not in done:
            visit(module)
    assert cycles == []


def test_no_module_imports_another_modules_private_name():
    _, private = import_graph()
    assert private == []


@pytest.mark.parametrize("family", [*CPU, *CUDA], ids=lambda f: f.name)
def test_every_family_fills_the_interface(family):
    assert isinstance(family, Family)
    assert issubclass(family.schedule_type, Schedule)
    assert family.schedule_type.algorithm == family.name
    assert dataclasses.is_dataclass(family.schedule_type)
    default = family.schedule_type()
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.algorithm_knob = 1
    for name, parameters in [("candidates", 5), ("illegal_reason", 4),
                             ("workspace_bytes", 4), ("fit", 4), ("run", 4)]:
        arguments = inspect.signature(getattr(family, name)).parameters.values()
        required = [p for p in arguments if p.default is inspect.Parameter.empty]
        assert len(required) <= parameters <= len(arguments), name


@pytest.mark.parametrize("family", [*CPU, *CUDA], ids=lambda f: f.name)
def test_a_schedule_survives_its_yaml_form(family):
    registry = CPU if family in list(CPU) else CUDA
    schedule = family.schedule_type()
    assert registry.parse(schedule.to_dict()) == schedule
    assert schedule.to_dict()["algorithm"] == family.name


def test_an_unknown_family_name_raises():
    with pytest.raises(ValueError, match="algorithm must be one of"):
        CPU.family("fft")


def test_a_schedule_of_another_class_under_a_family_name_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Impostor(Schedule):
        algorithm = "tiled"

    g = conv_geometry((1, 4, 4, 8), (1, 1, 8, 8))
    with pytest.raises(TypeError, match="a tiled schedule must be a TiledSchedule"):
        CPU.illegal_reason("forward", g, Impostor())


def test_the_primitive_table():
    g = conv_geometry((2, 7, 9, 3), (3, 2, 3, 5), (2, 1), (1, 1), "SAME")
    assert NAMES == ("forward", "backward_data", "backward_filter")
    assert [PRIMITIVES[n].result_shape(g) for n in NAMES] == [g.output_shape, g.input_shape,
                                                              g.filter_shape]
    assert primitive("backward_data").operand_shapes(g) == (g.output_shape, g.filter_shape)
    assert primitive("backward_data").channels(g) == 3
    assert primitive("forward").channels(g) == 5
    tensors = random_tensors(g, np.float32, np.random.default_rng(0))
    x, dy = primitive("backward_filter").pick(tensors)
    assert x.shape == g.input_shape and dy.shape == g.output_shape and x.dtype == np.float32
    with pytest.raises(ValueError, match="primitive must be one of"):
        primitive("backward_bias")


def test_generated_kernel_parameters_come_from_one_list():
    """The rendered ``def`` line, the compiled signature and the call all use the list (the
    address of the kernel's task first: the kernel's loop calls it through that)."""
    source = templates.render_forward(2, 8, "float32", 256)
    assert templates.FORWARD_PARAMETERS.header() in source
    assert templates.FORWARD_PARAMETERS.header().startswith("def kernel(task_address, xp, ")
    signature = templates.FORWARD_PARAMETERS.signature("float32")
    assert len(signature.args) == 1 + len(templates.FORWARD_PARAMETERS.names)
    values = dict.fromkeys(templates.FORWARD_PARAMETERS.names, 0)
    assert templates.FORWARD_PARAMETERS.arguments(values) == (0,) * len(values)
    with pytest.raises(TypeError, match=r"missing \['xp'\], unknown \['x'\]"):
        templates.FORWARD_PARAMETERS.arguments({**{k: 0 for k in values if k != "xp"}, "x": 0})
