"""The estimators predict on dask arrays: chunk by chunk, equal to predicting in memory.

Only the outputs reach the client; bad dask input gets the same clear errors
as in memory.  Local scheduler (test_dask_distributed.py covers worker processes).
"""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
pytest.importorskip("sklearn")

from sklearn.exceptions import NotFittedError  # noqa: E402

from gru_fast.estimators import GRUClassifier, GRURegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SMALL = dict(hidden_size=6, max_epochs=3, batch_size=16, random_state=0, dtype="float64")


def _sequences(n=90, T=7, features=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, features))
    return X, X[:, -2:, 0].sum(axis=1)


@pytest.mark.parametrize("univariate", [False, True])
def test_regressor_predicts_on_dask_like_in_memory(univariate):
    X, y = _sequences()
    if univariate:
        X = X[:, :, 0]
    model = GRURegressor(**SMALL).fit(X, y)
    chunks = (25,) + X.shape[1:]
    got = model.predict(da.from_array(X, chunks=chunks))
    assert isinstance(got, np.ndarray) and got.shape == (len(X),)
    np.testing.assert_allclose(got, model.predict(X), rtol=1e-12, atol=1e-12)
    assert model.score(da.from_array(X, chunks=chunks), y) == pytest.approx(model.score(X, y))


def test_classifier_predicts_labels_and_probabilities_on_dask():
    X, y = _sequences(seed=1)
    labels = np.where(y > 0, "up", "down")
    model = GRUClassifier(**SMALL).fit(X, labels)
    dask_x = da.from_array(X, chunks=(40, 7, 3))
    np.testing.assert_allclose(model.predict_proba(dask_x), model.predict_proba(X),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(model.predict(dask_x), model.predict(X))
    assert set(model.predict(dask_x)) <= {"up", "down"}


def test_bad_dask_input_to_predict_is_refused_clearly():
    X, y = _sequences()
    model = GRURegressor(**SMALL).fit(X, y)
    with pytest.raises(ValueError, match="3 features|features"):
        model.predict(da.from_array(X[:, :, :2], chunks=(30, 7, 2)))
    with pytest.raises(TypeError, match="floats"):
        model.predict(da.from_array(X.astype(np.int64), chunks=(30, 7, 3)))
    with pytest.raises(TypeError, match="ragged"):
        model.predict([da.from_array(X[0], chunks=(7, 3))])
    with pytest.raises(NotFittedError):
        GRURegressor(**SMALL).predict(da.from_array(X, chunks=(30, 7, 3)))
