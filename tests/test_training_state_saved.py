"""Training continues exactly after gru_fast.save / gru_fast.load.

A fitted estimator's file holds the optimizer's step count and moments, the
state of the shuffling generator and the validation split's seed: partial_fit
or a warm_start fit after loading takes the very steps it would have taken
without the round trip (compared bit for bit).
"""

import json
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

import gru_fast  # noqa: E402
from gru_fast.estimators import GRUClassifier, GRURegressor  # noqa: E402
from gru_fast.optim import SGD, Adam, AdamW  # noqa: E402
from gru_fast.serialization import HEADER_KEY  # noqa: E402


def _data(seed=0, n=40):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6, 2))
    y = X[:, -1, 0] + 0.5 * X[:, 0, 1]
    return X, y


def _round_trip(model, tmp_path):
    path = tmp_path / "model.npz"
    gru_fast.save(model, path)
    return gru_fast.load(path)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_partial_fit_after_load_continues_exactly(tmp_path, solver, dtype):
    X, y = _data()
    model = GRURegressor(hidden_size=8, solver=solver, dtype=dtype, batch_size=8,
                         learning_rate=0.01, random_state=0)
    for _ in range(3):
        model.partial_fit(X, y)
    loaded = _round_trip(model, tmp_path)
    assert loaded._optimizer.step_count == model._optimizer.step_count == 15
    for _ in range(3):
        model.partial_fit(X, y)
        loaded.partial_fit(X, y)
    assert loaded.loss_curve_ == model.loss_curve_
    assert loaded.n_iter_ == model.n_iter_ == 6
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_a_fresh_optimizer_would_take_other_steps(tmp_path):
    """The comparison above can fail: without the saved moments the steps differ."""
    X, y = _data()
    model = GRURegressor(hidden_size=8, batch_size=8, learning_rate=0.01, random_state=0)
    model.partial_fit(X, y)
    loaded = _round_trip(model, tmp_path)
    del loaded._optimizer
    model.partial_fit(X, y)
    loaded.partial_fit(X, y)
    assert not np.array_equal(loaded.predict(X), model.predict(X))


def test_warm_start_fit_after_load_continues_exactly(tmp_path):
    X, _ = _data(n=60)
    labels = np.where(X[:, -1, 0] > 0, "up", "down")
    model = GRUClassifier(hidden_size=6, max_epochs=3, batch_size=16, early_stopping=True,
                          validation_fraction=0.25, warm_start=True, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_epochs reached
        model.fit(X, labels)
        loaded = _round_trip(model, tmp_path)
        model.fit(X, labels)
        loaded.fit(X, labels)
    assert loaded.loss_curve_ == model.loss_curve_
    assert loaded.validation_scores_ == model.validation_scores_
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_lbfgs_estimator_saves_without_optimizer(tmp_path):
    X, y = _data()
    model = GRURegressor(hidden_size=4, solver="lbfgs", max_epochs=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    loaded = _round_trip(model, tmp_path)
    assert not hasattr(loaded, "_optimizer")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def _rewrite_header(path, change):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(str(arrays.pop(HEADER_KEY)))
    change(header["config"]["fitted"]["training"])
    np.savez(path, **{HEADER_KEY: np.array(json.dumps(header))}, **arrays)


@pytest.mark.parametrize("change, match", [
    (lambda t: t.update(shuffle_state={"bit_generator": "MT19937"}), "shuffling generator"),
    (lambda t: t.update(shuffle_state="x"), "shuffling generator"),
    (lambda t: t.update(split_seed=-1), "non-negative"),
    (lambda t: t["optimizer"].update(solver="lbfgs"), "no stochastic solver"),
    (lambda t: t["optimizer"].update(buffers=["nope"]), "lacks the optimizer buffers"),
    (lambda t: t["optimizer"].update(step_count=-3), "step_count"),
    (lambda t: t["optimizer"].update(step_count="5"), "step_count"),
])
def test_bad_training_state_is_refused(tmp_path, change, match):
    X, y = _data()
    model = GRURegressor(hidden_size=4, batch_size=8, random_state=0).partial_fit(X, y)
    path = tmp_path / "model.npz"
    gru_fast.save(model, path)
    _rewrite_header(path, change)
    with pytest.raises(ValueError, match=match):
        gru_fast.load(path)


@pytest.mark.parametrize("make", [
    lambda p: Adam(p, lr=0.01), lambda p: AdamW(p, lr=0.01),
    lambda p: SGD(p, lr=0.01, momentum=0.9, nesterov=True), lambda p: SGD(p, lr=0.01),
])
def test_optimizer_state_dict_continues_exactly(make):
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    copies = {name: value.copy() for name, value in params.items()}
    grads = [{name: rng.standard_normal(value.shape) for name, value in params.items()}
             for _ in range(6)]
    first = make(params)
    for grad in grads[:3]:
        first.step(grad)
    second = make(copies)
    for grad in grads[:3]:
        second.step(grad)
    resumed = make({name: value.copy() for name, value in params.items()})
    resumed.load_state_dict(second.state_dict())
    for grad in grads[3:]:
        first.step(grad)
        resumed.step(grad)
    for name in params:
        np.testing.assert_array_equal(resumed.params[name], first.params[name])
    assert resumed.step_count == first.step_count == 6


def test_optimizer_load_state_dict_checks():
    params = {"a": np.zeros((2, 2))}
    adam = Adam(params)
    with pytest.raises(ValueError, match="one entry per parameter"):
        adam.load_state_dict({"step_count": 1, "state": {"b": {}}})
    with pytest.raises(ValueError, match="shape"):
        adam.load_state_dict({"step_count": 1, "state": {"a": {
            "exp_avg": np.zeros(3), "exp_avg_sq": np.zeros(3)}}})
    with pytest.raises(ValueError, match="all of"):
        adam.load_state_dict({"step_count": 1, "state": {"a": {"exp_avg": np.zeros((2, 2))}}})
    with pytest.raises(ValueError, match="may hold"):
        adam.load_state_dict({"step_count": 1, "state": {"a": {"momentum_buffer": 0}}})
    state = adam.state_dict()
    assert state == {"step_count": 0, "state": {"a": {}}}

