"""A pickled FrozenGRU or FrozenGRULayer loads on a core with another panel width.

The packed panels are 32 columns wide on the AVX-512 core and 16 below; a
pickle holds the unpacked weights, and loading packs them for the core of
the process that loads it.  The other core is forced in a subprocess
(GRU_FAST_CPU_LEVEL).
"""

import pickle

import numpy as np
import pytest

import gru_fast
from gru_fast import _core

from cpu_level_helpers import other_levels, run_python

# (T, B, I, H): H of one partial panel, and H over several panels of either width.
SHAPES = [(4, 3, 5, 11), (3, 2, 40, 70)]
RTOL = {np.float32: 2e-4, np.float64: 1e-9}


def make_frozen(seed, shape, dtype, reset_after):
    rng = np.random.default_rng(seed)
    _, _, input_size, hidden_size = shape
    weights = {"weight_ih": rng.uniform(-0.5, 0.5, (3 * hidden_size, input_size)),
               "weight_hh": rng.uniform(-0.5, 0.5, (3 * hidden_size, hidden_size)),
               "bias_ih": rng.uniform(-0.5, 0.5, 3 * hidden_size),
               "bias_hh": rng.uniform(-0.5, 0.5, 3 * hidden_size)}
    weights = {name: value.astype(dtype) for name, value in weights.items()}
    return weights, gru_fast.FrozenGRU(**weights, reset_after=reset_after)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_unpacked_weights_are_the_weights_exactly(dtype, shape):
    weights, frozen = make_frozen(1, shape, dtype, reset_after=True)
    weight_ih, weight_hh = frozen._unpacked_weights()
    np.testing.assert_array_equal(weight_ih, weights["weight_ih"])
    np.testing.assert_array_equal(weight_hh, weights["weight_hh"])


def test_pickle_holds_weights_and_the_makers_layout_not_panels():
    weights, frozen = make_frozen(2, SHAPES[1], np.float32, reset_after=False)
    state = frozen.__getstate__()
    assert "_packed_ih" not in state and "_packed_hh" not in state
    np.testing.assert_array_equal(state["_weight_hh"], weights["weight_hh"])
    assert state["_panel_width"] == _core.PANEL_WIDTH
    assert state["_cpu_level"] == _core.CPU_LEVEL


def test_old_or_corrupt_pickles_are_refused():
    _, frozen = make_frozen(3, SHAPES[0], np.float32, reset_after=False)
    old = {key: value for key, value in frozen.__dict__.items()}  # panels, no weights
    with pytest.raises(ValueError, match="earlier gru_fast"):
        gru_fast.FrozenGRU.__new__(gru_fast.FrozenGRU).__setstate__(old)
    state = frozen.__getstate__()
    state["_weight_hh"] = state["_weight_hh"][:, :-1]
    with pytest.raises(ValueError, match="corrupt FrozenGRU pickle"):
        gru_fast.FrozenGRU.__new__(gru_fast.FrozenGRU).__setstate__(state)
    state = frozen.__getstate__()
    state["_weight_ih"] = state["_weight_ih"].astype(np.float64)
    with pytest.raises(ValueError, match="corrupt FrozenGRU pickle"):
        gru_fast.FrozenGRU.__new__(gru_fast.FrozenGRU).__setstate__(state)


# Run at another level: load the pickles of this process (argv[1]), check them
# against gru_forward there, then pickle its own FrozenGRU and layer (argv[2]).
OTHER_SIDE = """
import pickle, sys
import numpy as np
import gru_fast
from gru_fast import _core
with open(sys.argv[1], "rb") as file:
    frozen, layer, x, weights = pickle.load(file)
for array, name in zip(frozen._unpacked_weights(), ("weight_ih", "weight_hh")):
    np.testing.assert_array_equal(array, weights[name])
y, h = frozen(x)
y_ref, h_ref = gru_fast.gru_forward(x, None, **weights, reset_after=frozen.reset_after)
np.testing.assert_allclose(y, y_ref, rtol=2e-4, atol=2e-5)
assert layer._frozen[0, 0]._panel_width == _core.PANEL_WIDTH
theirs = gru_fast.GRU(x.shape[2], layer.hidden_size, 2, bidirectional=True,
                      reset_after=True, seed=5)
np.testing.assert_allclose(layer(x)[0], theirs(x)[0], rtol=2e-4, atol=2e-5)
with open(sys.argv[2], "wb") as file:
    pickle.dump((_core.PANEL_WIDTH, frozen, y, layer(x)[0]), file)
print("level", _core.CPU_LEVEL, "panel", _core.PANEL_WIDTH)
"""


@pytest.mark.parametrize("level", other_levels())
def test_pickles_cross_cpu_levels_both_ways(level, tmp_path):
    shape = SHAPES[1]
    weights, frozen = make_frozen(4, shape, np.float32, reset_after=True)
    layer = gru_fast.GRU(shape[2], shape[3], 2, bidirectional=True, reset_after=True,
                         seed=5).freeze()
    x = np.random.default_rng(6).standard_normal(shape[:3]).astype(np.float32)
    ours, theirs = tmp_path / "ours.pkl", tmp_path / "theirs.pkl"
    ours.write_bytes(pickle.dumps((frozen, layer, x, weights)))

    result = run_python(OTHER_SIDE, level, str(ours), str(theirs))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"level {level}" in result.stdout
    their_panel, their_frozen, their_y, their_layer_y = pickle.loads(theirs.read_bytes())
    if level == "avx512" or _core.CPU_LEVEL == "avx512":
        assert their_panel != _core.PANEL_WIDTH  # the case that used to read out of bounds
    # Made at the other level, run here: the results of this level's core.
    assert their_frozen._panel_width == _core.PANEL_WIDTH
    np.testing.assert_array_equal(their_frozen(x)[0], frozen(x)[0])
    np.testing.assert_allclose(their_y, frozen(x)[0], rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(their_layer_y, layer(x)[0], rtol=2e-4, atol=2e-5)
