"""Dask training in the forms a user brings: 2-D X (univariate), early stopping, ragged.

Local schedulers; test_dask_distributed.py runs the same paths on worker processes.
"""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
pytest.importorskip("sklearn")

from sklearn.model_selection import train_test_split  # noqa: E402

from gru_fast.estimators import GRUClassifier, GRURegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

LBFGS = dict(hidden_size=5, solver="lbfgs", dtype="float64", max_epochs=10, tol=0.0,
             random_state=0)


def _univariate(n=200, T=9, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T))
    y = X[:, -3:].sum(axis=1) + 0.1 * rng.standard_normal(n)
    return X, y


def test_univariate_2d_dask_x_fits_like_2d_numpy():
    X, y = _univariate()
    local = GRURegressor(**LBFGS).fit(X, y)
    spread = GRURegressor(**LBFGS).fit(da.from_array(X, chunks=(60, 9)),
                                       da.from_array(y, chunks=60))
    assert spread.n_features_in_ == local.n_features_in_ == 9  # T columns, as in memory
    assert spread.gru_.input_size == 1
    np.testing.assert_allclose(spread._network.flat, local._network.flat, rtol=1e-6,
                               atol=1e-9)
    np.testing.assert_allclose(spread.predict(X), local.predict(X), rtol=1e-6, atol=1e-9)


def test_univariate_2d_dask_x_checks_the_fitted_layout():
    X, y = _univariate()
    model = GRURegressor(hidden_size=4, max_epochs=1, random_state=0)
    model.partial_fit(da.from_array(X, chunks=(50, 9)), y)
    model.partial_fit(da.from_array(X, chunks=(50, 9)), y)  # same T columns: fine
    assert model.n_iter_ == 2
    with pytest.raises(ValueError, match="expecting 9 features"):
        model.partial_fit(da.from_array(X[:, :5], chunks=(50, 5)), y)
    sequences = GRURegressor(hidden_size=4, max_epochs=1, random_state=0)
    sequences.partial_fit(np.stack([X, X], axis=2), y)  # 2 features per step
    with pytest.raises(ValueError, match="fitted on sequences of 2 features"):
        sequences.partial_fit(da.from_array(X, chunks=(50, 9)), y)


def _validation_rows(model, n, stratify=None):
    """The rows the estimator held out (its own split, from its split seed)."""
    return train_test_split(np.arange(n), test_size=model.validation_fraction,
                            random_state=model._split_seed, stratify=stratify)[1]


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_early_stopping_on_dask_scores_the_held_out_rows(solver):
    X, y = _univariate(n=300, seed=1)
    model = GRURegressor(hidden_size=6, solver=solver, learning_rate=0.02, batch_size=25,
                         max_epochs=12, early_stopping=True, validation_fraction=0.2,
                         n_iter_no_change=3, random_state=0)
    model.fit(da.from_array(X, chunks=(70, 9)), da.from_array(y, chunks=70))
    assert len(model.validation_scores_) == model.n_iter_ >= 1
    assert model.best_validation_score_ == max(model.validation_scores_)
    # The best epoch's parameters are restored; their score on the held-out rows,
    # computed in memory, is the best validation score the chunks computed.
    rows = _validation_rows(model, 300)
    assert len(rows) == 60
    assert model.score(X[rows], y[rows]) == pytest.approx(model.best_validation_score_,
                                                          rel=1e-9, abs=1e-12)


def test_classifier_early_stopping_on_dask_is_stratified():
    X, y = _univariate(n=240, seed=2)
    labels = np.where(y > 0.5, "up", np.where(y < -0.5, "down", "flat"))
    model = GRUClassifier(hidden_size=5, learning_rate=0.02, max_epochs=6,
                          early_stopping=True, n_iter_no_change=2, random_state=0)
    model.fit(da.from_array(X, chunks=(50, 9)), da.from_array(labels, chunks=50))
    encoded = np.searchsorted(model.classes_, labels)
    rows = _validation_rows(model, 240, stratify=encoded)
    assert model.score(X[rows], labels[rows]) == pytest.approx(model.best_validation_score_)
    assert model.best_validation_score_ == max(model.validation_scores_)


def test_early_stopping_leaves_x_on_the_chunks(monkeypatch):
    """The split and the scores bring only validation targets and outputs to the client."""
    import gru_fast.dask as gru_dask

    X, y = _univariate(n=200, seed=3)
    X_dask = da.from_array(X, chunks=(50, 9))
    computed = []
    original = da.Array.compute

    def recording(self, **kwargs):
        computed.append(self.shape)
        return original(self, **kwargs)

    monkeypatch.setattr(da.Array, "compute", recording)
    model = GRURegressor(hidden_size=4, max_epochs=3, early_stopping=True,
                         n_iter_no_change=10, random_state=0)
    model.fit(X_dask, da.from_array(y, chunks=50))
    # y's first row (its checks), the 20 validation targets, 3 epochs of validation outputs
    assert computed == [(1,), (20, 1)] + [(20, 1)] * 3, computed
    assert isinstance(gru_dask.DaskSequences(X_dask).x, da.Array)


def test_ragged_dask_sequences_get_a_clear_error():
    rng = np.random.default_rng(4)
    sequences = [da.from_array(rng.standard_normal((T, 2))) for T in (5, 3, 7)]
    with pytest.raises(TypeError, match="ragged sequences are trained in memory only"):
        GRURegressor(hidden_size=3, max_epochs=1).fit(sequences, np.zeros(3))
