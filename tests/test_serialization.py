"""gru_fast.save / gru_fast.load: round trips of every model, and files that must be refused."""

import json
import os
import pickle
import warnings
import zipfile

import numpy as np
import pytest

import gru_fast
from gru_fast import reference


def _x(rng, shape=(5, 3, 4), dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("settings", [
    dict(),
    dict(num_layers=2, bidirectional=True, reset_after=True, dtype=np.float64),
    dict(bias=False, batch_first=True),
])
def test_gru_round_trip(tmp_path, settings):
    layer = gru_fast.GRU(4, 6, seed=1, **{"num_layers": 1, **settings})
    path = tmp_path / "gru.npz"
    gru_fast.save(layer, path)
    loaded = gru_fast.load(path)
    assert type(loaded) is gru_fast.GRU
    for name in ("input_size", "hidden_size", "num_layers", "bias", "batch_first",
                 "bidirectional", "reset_after", "dtype"):
        assert getattr(loaded, name) == getattr(layer, name), name
    x = _x(np.random.default_rng(0), dtype=layer.dtype)
    np.testing.assert_array_equal(loaded(x)[0], layer(x)[0])


def test_reference_frozen_layer_and_frozen_gru_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    x = _x(rng)
    ref = reference.GRU(4, 5, reset_after=True, seed=2)
    gru_fast.save(ref, tmp_path / "ref")          # .npz appended, like numpy.savez
    loaded = gru_fast.load(tmp_path / "ref.npz")
    assert type(loaded) is reference.GRU
    np.testing.assert_array_equal(loaded(x)[0], ref(x)[0])

    frozen_layer = gru_fast.GRU(4, 5, num_layers=2, seed=3).freeze()
    gru_fast.save(frozen_layer, tmp_path / "layer.npz")
    loaded = gru_fast.load(tmp_path / "layer.npz")
    assert isinstance(loaded, gru_fast.FrozenGRULayer)
    np.testing.assert_array_equal(loaded(x)[0], frozen_layer(x)[0])

    weights = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in
               (("weight_ih", (15, 4)), ("weight_hh", (15, 5)), ("bias_ih", (15,)),
                ("bias_hh", (15,)))}
    for bias in (True, False):
        given = weights if bias else {k: v for k, v in weights.items() if "weight" in k}
        frozen = gru_fast.FrozenGRU(**given, reset_after=bias)
        gru_fast.save(frozen, tmp_path / "frozen.npz")
        loaded = gru_fast.load(tmp_path / "frozen.npz")
        assert isinstance(loaded, gru_fast.FrozenGRU) and loaded.reset_after is bias
        np.testing.assert_array_equal(loaded(x)[0], frozen(x)[0])


def test_header_is_json_with_every_setting(tmp_path):
    gru_fast.save(gru_fast.GRU(3, 4, reset_after=True), tmp_path / "g.npz")
    with np.load(tmp_path / "g.npz", allow_pickle=False) as archive:
        header = json.loads(str(archive["__gru_fast__"]))
    assert header["format"] == "gru_fast" and header["format_version"] == 1
    assert header["class"] == "GRU"
    assert header["config"] == {"input_size": 3, "hidden_size": 4, "num_layers": 1,
                                "bias": True, "batch_first": False, "bidirectional": False,
                                "reset_after": True, "dtype": "float32"}


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_fitted_estimator_round_trip(tmp_path, kind):
    pytest.importorskip("sklearn")
    from gru_fast.estimators import GRUClassifier, GRURegressor

    rng = np.random.default_rng(4)
    X = rng.standard_normal((60, 7))
    if kind == "regressor":
        model = GRURegressor(hidden_size=6, max_epochs=3, bidirectional=True,
                             early_stopping=True, random_state=0)
        y = X.sum(axis=1)
    else:
        model = GRUClassifier(hidden_size=6, max_epochs=3, num_layers=2, random_state=0)
        y = np.array(["a", "b", "c"], dtype=object)[rng.integers(0, 3, 60)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    gru_fast.save(model, tmp_path / "model.npz")
    loaded = gru_fast.load(tmp_path / "model.npz")
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.loss_curve_ == model.loss_curve_ and loaded.n_iter_ == model.n_iter_
    assert loaded.n_features_in_ == 7
    if kind == "classifier":
        np.testing.assert_array_equal(loaded.classes_, model.classes_)
        assert loaded.classes_.dtype == model.classes_.dtype
        np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    else:
        assert loaded.validation_scores_ == model.validation_scores_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded.partial_fit(X, y)   # the loaded model trains on
    assert loaded.n_iter_ == model.n_iter_ + 1


def test_unsupported_objects_and_unfitted_estimators(tmp_path):
    with pytest.raises(TypeError, match="saves GRU"):
        gru_fast.save({"weight": np.ones(3)}, tmp_path / "x.npz")
    sklearn = pytest.importorskip("sklearn")
    from gru_fast.estimators import GRURegressor
    with pytest.raises(sklearn.exceptions.NotFittedError):
        gru_fast.save(GRURegressor(), tmp_path / "x.npz")


class _Payload:
    """Unpickling this creates the marker file: what a malicious model file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_raw_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "model.npz"
    path.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(ValueError, match="pickled data"):
        gru_fast.load(path)
    assert not marker.exists()


def test_an_npz_with_a_pickled_array_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "model.npz"
    gru_fast.save(gru_fast.GRU(2, 3), path)
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(str(marker))
    # the attacker adds an object array (stored as a pickle) to a genuine file
    with zipfile.ZipFile(path, "a") as archive:
        with archive.open("weight_ih_l1.npy", "w") as member:
            np.lib.format.write_array(member, payload, allow_pickle=True)
    with pytest.raises(ValueError, match="pickled data"):
        gru_fast.load(path)
    assert not marker.exists()


def _write_npz(path, header, **arrays):
    np.savez(path, __gru_fast__=np.array(json.dumps(header)), **arrays)


def test_files_not_written_by_save_are_refused(tmp_path):
    good = {"format": "gru_fast", "format_version": 1, "class": "GRU",
            "config": {"input_size": 2, "hidden_size": 3, "num_layers": 1, "bias": False,
                       "batch_first": False, "bidirectional": False, "reset_after": False,
                       "dtype": "float32"}}
    weights = {"weight_ih_l0": np.ones((9, 2), np.float32),
               "weight_hh_l0": np.ones((9, 3), np.float32)}
    _write_npz(tmp_path / "ok.npz", good, **weights)
    assert gru_fast.load(tmp_path / "ok.npz").hidden_size == 3

    np.save(tmp_path / "single.npy", np.ones(3))
    np.savez(tmp_path / "plain.npz", a=np.ones(3))
    (tmp_path / "text.npz").write_text("hello")
    _write_npz(tmp_path / "future.npz", {**good, "format_version": 99}, **weights)
    _write_npz(tmp_path / "class.npz", {**good, "class": "os.system"}, **weights)
    huge = {**good, "config": {**good["config"], "hidden_size": 10 ** 9}}
    _write_npz(tmp_path / "huge.npz", huge, **weights)
    cases = {"single.npy": "single .npy array", "plain.npz": "header", "text.npz": "not a file",
             "future.npz": "version 99", "class.npz": "unknown class",
             "huge.npz": "hidden_size=1000000000"}
    for name, match in cases.items():
        with pytest.raises(ValueError, match=match):
            gru_fast.load(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        gru_fast.load(tmp_path / "missing.npz")
    assert os.path.exists(tmp_path / "ok.npz")
