"""The Python examples of docs/search.md run as written."""

from __future__ import annotations

import pathlib
import re

import pytest

pytest.importorskip("optuna")

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "search.md"


@pytest.mark.parametrize("index", [0, 1])
def test_docs_search_examples_run(index, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 2
    exec(compile(blocks[index], f"docs/search.md example {index}", "exec"), {})
    assert capsys.readouterr().out.strip()
