"""The Python examples of docs/search.md run as written."""

from __future__ import annotations

import pathlib
import re

import pytest

pytest.importorskip("optuna")

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "search.md"


def _blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 2
    return blocks


def test_docs_conditional_draw_example_runs(capsys):
    exec(compile(_blocks()[0], "docs/search.md example 0", "exec"), {})
    assert capsys.readouterr().out.strip()


@pytest.mark.slow
def test_docs_search_example_trains_thirty_architectures_on_digits(capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("flax")
    namespace: dict = {}
    exec(compile(_blocks()[1], "docs/search.md example 1", "exec"), namespace)
    study = namespace["study"]
    # 30 trials, each a trained network scored on held-out digits: better than chance (0.1), at most 1
    assert len(study.trials) == 30
    assert all(0.0 <= t.value <= 1.0 for t in study.trials)
    assert study.best_value > 0.5
    assert "best validation accuracy" in capsys.readouterr().out
