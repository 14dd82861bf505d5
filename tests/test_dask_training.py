"""GRURegressor / GRUClassifier fitted on dask arrays, on Dask's local schedulers.

L-BFGS on dask data computes the same full-batch objective as in memory (a
sum over chunks instead of over blocks of rows), so in float64 the fits agree
to rounding.  The distributed cluster is tested in test_dask_distributed.py.
"""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
pytest.importorskip("sklearn")

from gru_fast.estimators import GRUClassifier, GRURegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

LBFGS = dict(hidden_size=5, solver="lbfgs", dtype="float64", max_epochs=12, tol=0.0,
             random_state=0)


def _problem(n=240, T=8, I=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, I))
    y = X[:, -2:, 0].sum(axis=1) + 0.1 * rng.standard_normal(n)
    return X, y


def _dask(X, y, rows=70):
    return da.from_array(X, chunks=(rows,) + X.shape[1:]), da.from_array(y, chunks=rows)


def test_regressor_lbfgs_equals_in_memory_with_2d_targets():
    X, y = _problem()
    targets = np.stack([y, -2 * y], axis=1)
    local = GRURegressor(**LBFGS).fit(X, targets)
    spread = GRURegressor(**LBFGS).fit(*_dask(X, targets))
    assert spread.n_features_in_ == 2 and spread.n_iter_ == local.n_iter_
    np.testing.assert_allclose(spread._network.flat, local._network.flat, rtol=1e-6,
                               atol=1e-9)
    assert spread.predict(X).shape == (240, 2)


def test_classifier_lbfgs_equals_in_memory_with_string_labels():
    X, y = _problem(seed=1)
    labels = np.where(y > 0.5, "high", np.where(y < -0.5, "low", "mid"))
    local = GRUClassifier(**LBFGS).fit(X, labels)
    spread = GRUClassifier(**LBFGS).fit(*_dask(X, labels))
    np.testing.assert_array_equal(spread.classes_, ["high", "low", "mid"])
    np.testing.assert_allclose(spread._network.flat, local._network.flat, rtol=1e-6,
                               atol=1e-9)
    np.testing.assert_allclose(spread.predict_proba(X), local.predict_proba(X), rtol=1e-6)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_stochastic_solvers_stream_the_chunks(solver):
    X, y = _problem(n=300)
    model = GRURegressor(hidden_size=8, solver=solver, learning_rate=0.01, batch_size=20,
                         max_epochs=8, random_state=0, n_iter_no_change=100)
    model.fit(*_dask(X.astype(np.float32), y, rows=64))
    assert len(model.loss_curve_) == 8 and np.all(np.isfinite(model.loss_curve_))
    assert model.loss_curve_[-1] < 0.5 * model.loss_curve_[0]
    assert model.score(X, y) > 0.5
    before = model.n_iter_
    model.partial_fit(*_dask(X.astype(np.float32), y, rows=64))
    assert model.n_iter_ == before + 1


def test_same_random_state_same_dask_fit():
    X, y = _problem(n=100)
    fits = [GRURegressor(hidden_size=4, max_epochs=2, random_state=3).fit(*_dask(X, y, 30))
            for _ in range(2)]
    np.testing.assert_array_equal(fits[0]._network.flat, fits[1]._network.flat)


@pytest.mark.parametrize("make_input, error, match", [
    (lambda X, y: (X[:, :, :, None], y), ValueError, "\\(n_samples, T\\) or"),
    (lambda X, y: ([X[0], X[1, :4]], y[:2]), TypeError, "ragged sequences"),
    (lambda X, y: (X.astype(int), y), TypeError, "floats"),
    (lambda X, y: (X, y[:-1]), ValueError, "n_samples=240"),
    (lambda X, y: (da.where(da.arange(240)[:, None, None] == 200, np.nan, X), y),
     ValueError, "X contains NaN"),
    (lambda X, y: (X, da.where(da.arange(240) == 3, np.inf, y)), ValueError,
     "y contains NaN"),
])
def test_bad_dask_input(make_input, error, match):
    X, y = _dask(*_problem())
    with pytest.raises(error, match=match):
        GRURegressor(**LBFGS).fit(*make_input(X, y))


def test_classifier_partial_fit_rejects_labels_outside_classes():
    X, y = _problem()
    labels = (y > 0).astype(int)
    model = GRUClassifier(hidden_size=4, max_epochs=1, random_state=0)
    model.partial_fit(*_dask(X, labels), classes=[0, 1])
    with pytest.raises(ValueError, match="not in classes_"):
        model.partial_fit(*_dask(X, labels + 1))
