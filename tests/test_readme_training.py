"""The README's training example runs as written and does what its comments say."""

import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_training_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    example = next(block for block in blocks if "GridSearchCV" in block)
    monkeypatch.chdir(tmp_path)   # it writes forecaster.npz
    namespace = {}
    exec(compile(example, "README.md training", "exec"), namespace)  # noqa: S102
    X, y = namespace["X"], namespace["y"]
    search, model, restored = namespace["search"], namespace["model"], namespace["restored"]
    assert search.best_params_["gruregressor__hidden_size"] in (8, 24)
    assert search.score(X[300:], y[300:]) > 0.8
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    assert (tmp_path / "forecaster.npz").exists()
