"""The Python examples in README.md and docs/*.md run (doctest-style examples run
separately through pytest's --doctest-glob)."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BLOCKS = [(path, i, code) for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
          for i, code in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.S))
          if ">>>" not in code]


@pytest.mark.parametrize("path, i, code", BLOCKS,
                         ids=[f"{p.relative_to(ROOT)}#{i}" for p, i, _ in BLOCKS])
def test_example_block_runs(path, i, code):
    if "import torch" in code:
        pytest.importorskip("torch")
    exec(compile(code, f"{path}#{i}", "exec"), {"__name__": "__docs__"})
