"""The README's examples run as written and print what the README says."""

import ast
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parent.parent / "README.md"


def examples():
    """(code, expected) pairs: each statement of the README's python blocks, with the
    array written in the comment lines right after it (None when there is none)."""
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S):
        statements, expected = [], []
        for line in block.splitlines():
            if line.startswith("# ") and statements and re.match(r"#\s+\[", line):
                expected[-1] = (expected[-1] or "") + line[1:]
            elif line.startswith((" ", ")")) and statements:
                statements[-1] += "\n" + line  # continuation of a multi-line call
            else:
                statements.append(line)
                expected.append(None)
        yield list(zip(statements, expected))


def test_readme_examples_print_what_the_readme_says():
    checked = 0
    namespace = {}  # the blocks read as one session, as in the README
    for block in examples():
        for code, expected in block:
            if expected is None:
                exec(code, namespace)
                continue
            value = eval(code.split("#")[0], namespace)
            literal = re.sub(r"(\d)\.(?=[,\]\s])", r"\1.0", expected.replace("\n", " "))
            np.testing.assert_array_equal(value, np.array(ast.literal_eval(literal.strip())))
            checked += 1
    assert checked == 4


def test_the_layout_tree_names_every_module():
    """The README's "How it works" tree names each module and package of numbaconv."""
    text = README.read_text()
    tree = text[text.index("## How it works"):text.index("## CUDA")]
    package = Path(__file__).resolve().parent.parent / "numbaconv"
    missing = [str(path.relative_to(package)) for path in sorted(package.rglob("*.py"))
               if path.name not in ("__init__.py", "__main__.py") and path.name not in tree]
    missing += [f"{path.name}/" for path in sorted(package.rglob("*")) if path.is_dir()
                and (path / "__init__.py").exists() and f"{path.name}/" not in tree]
    assert missing == []
