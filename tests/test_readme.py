"""The README's usage example runs as written and does what its comments say."""

import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_usage_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    namespace = {}
    exec(compile(blocks[0], "README.md usage", "exec"), namespace)  # noqa: S102
    T, B, I, H = (namespace[name] for name in "TBIH")
    assert namespace["y"].shape == (T, B, 2 * H)
    assert namespace["h_n"].shape == (4, B, H)
    assert namespace["dx"].shape == (T, B, I)
    grads = namespace["grads"]
    assert set(grads) == {"x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"}
    assert grads["bias_ih"] is None and np.all(np.isfinite(grads["x"]))
    assert set(namespace["param_grads"]) == set(namespace["gru"].params)
    # The inference lines: same numbers as gru_forward and the layer.
    import gru_fast
    x, w_ih, w_hh = namespace["x"], namespace["w_ih"], namespace["w_hh"]
    expected_y, _ = gru_fast.gru_forward(x, None, w_ih, w_hh, reset_after=True)
    np.testing.assert_array_equal(namespace["frozen"](x)[0], expected_y)
    # A step is bitwise gru_forward on that one step; the whole sequence's first step
    # only close: its input projection is one product over all T*B rows, whose row
    # tiles (and so the order of a column's sum) differ from those of B rows alone.
    first_step, _ = gru_fast.gru_forward(x[:1], None, w_ih, w_hh, reset_after=True)
    np.testing.assert_array_equal(namespace["h"], first_step[0])
    np.testing.assert_allclose(namespace["h"], expected_y[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(namespace["y"], namespace["gru"](x)[0])
