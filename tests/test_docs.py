"""The Python examples in README.md and docs/*.md run, each file's blocks in order in
one namespace (doctest-style examples run separately through --doctest-glob)."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _blocks(path):
    return [c for c in re.findall(r"```python\n(.*?)```", path.read_text(), re.S) if ">>>" not in c]


@pytest.mark.parametrize("path", [p for p in FILES if _blocks(p)],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_example_blocks_run(path):
    blocks = _blocks(path)
    if any("import torch" in c for c in blocks):
        pytest.importorskip("torch")
    namespace = {"__name__": "__docs__"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{path}#{i}", "exec"), namespace)
