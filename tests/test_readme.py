"""The README's Python example runs."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    for code in blocks:
        namespace = {}
        exec(compile(code, str(README), "exec"), namespace)
    assert namespace["grads"].dw_hh.shape == (128, 128)
