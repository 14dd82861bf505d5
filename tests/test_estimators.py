"""GRURegressor and GRUClassifier: scikit-learn's contract, input forms, training behaviour."""

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from gru_fast.estimators import GRUClassifier, GRURegressor  # noqa: E402


@parametrize_with_checks([GRURegressor(), GRUClassifier()])
def test_sklearn_contract(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def _sum_task(n_samples=160, seq_len=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, seq_len))
    return X, X[:, -3:].sum(axis=1)


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_every_solver_learns_a_regression(solver):
    X, y = _sum_task()
    settings = {"learning_rate": 0.01 if solver != "sgd" else 0.05}
    model = GRURegressor(hidden_size=16, solver=solver, max_epochs=150, random_state=0,
                         **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    assert model.score(X, y) > 0.95
    assert model.n_iter_ == len(model.loss_curve_) or solver == "lbfgs"
    assert model.loss_curve_[-1] < model.loss_curve_[0]
    assert model.n_features_in_ == X.shape[1]


def test_fit_is_deterministic_for_a_random_state():
    X, y = _sum_task()
    first = GRURegressor(hidden_size=8, max_epochs=5, random_state=3).fit(X, y)
    second = GRURegressor(hidden_size=8, max_epochs=5, random_state=3).fit(X, y)
    third = GRURegressor(hidden_size=8, max_epochs=5, random_state=4).fit(X, y)
    np.testing.assert_array_equal(first.predict(X), second.predict(X))
    assert first.loss_curve_ == second.loss_curve_
    assert not np.array_equal(first.predict(X), third.predict(X))


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 2e-5)])
def test_ragged_list_predicts_the_same_alone_or_in_a_batch(dtype, rtol):
    rng = np.random.default_rng(1)
    sequences = [rng.standard_normal((int(length), 2)) for length in rng.integers(1, 15, 40)]
    y = np.array([sequence[:, 0].sum() for sequence in sequences])
    model = GRURegressor(hidden_size=8, max_epochs=30, dtype=dtype, bidirectional=True,
                         random_state=0).fit(sequences, y)
    assert model.n_features_in_ == 2
    together = model.predict(sequences)
    alone = np.array([model.predict(sequence[None])[0] for sequence in sequences])
    np.testing.assert_allclose(together, alone, rtol=rtol, atol=rtol)
    assert model.score(sequences, y) > 0.5
    # univariate ragged sequences given as 1-D arrays
    univariate = [sequence[:, 0] for sequence in sequences]
    model = GRURegressor(hidden_size=8, max_epochs=3, random_state=0).fit(univariate, y)
    assert model.predict(univariate).shape == (40,)


def test_3d_input_takes_any_length_at_predict_time():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((50, 6, 3))
    y = X[:, :, 0].sum(axis=1)
    model = GRURegressor(hidden_size=8, max_epochs=5, random_state=0).fit(X, y)
    assert model.n_features_in_ == 3
    assert model.predict(rng.standard_normal((4, 11, 3))).shape == (4,)
    with pytest.raises(ValueError, match="X has 2 features"):
        model.predict(rng.standard_normal((4, 6, 2)))
    with pytest.raises(ValueError, match="univariate"):
        model.predict(rng.standard_normal((4, 6)))


def test_multioutput_regression_keeps_the_shape_of_y():
    X, y = _sum_task()
    Y = np.column_stack([y, -y])
    model = GRURegressor(hidden_size=8, max_epochs=5, random_state=0).fit(X, Y)
    assert model.predict(X).shape == (len(X), 2)
    assert model.head_.out_features == 2


def test_classifier_any_labels_and_probabilities():
    X, y = _sum_task()
    labels = np.where(y > 0.5, "high", np.where(y < -0.5, "low", "mid"))
    model = GRUClassifier(hidden_size=16, max_epochs=80, random_state=0).fit(X, labels)
    assert list(model.classes_) == ["high", "low", "mid"]
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert set(model.predict(X)) <= set(model.classes_)
    assert model.score(X, labels) > 0.8


def test_partial_fit_runs_one_epoch_each_and_needs_classes_first():
    X, y = _sum_task()
    model = GRURegressor(hidden_size=8, random_state=0)
    for _ in range(3):
        model.partial_fit(X, y)
    assert model.n_iter_ == 3 and len(model.loss_curve_) == 3
    classifier = GRUClassifier(hidden_size=8, random_state=0)
    with pytest.raises(ValueError, match="classes"):
        classifier.partial_fit(X, y > 0)
    classifier.partial_fit(X[:10], np.ones(10, bool), classes=[False, True])
    classifier.partial_fit(X, y > 0)
    assert list(classifier.classes_) == [False, True]
    with pytest.raises(ValueError, match="not in classes_"):
        classifier.partial_fit(X[:3], np.array([2, 3, 4]))
    with pytest.raises(AttributeError, match="partial_fit"):
        GRURegressor(solver="lbfgs").partial_fit(X, y)


def test_warm_start_continues_and_early_stopping_keeps_the_best():
    X, y = _sum_task()
    model = GRURegressor(hidden_size=8, max_epochs=4, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
        weights = model.gru_.params["weight_hh_l0"].copy()
        model.fit(X, y)
    assert model.n_iter_ == 8 and len(model.loss_curve_) == 8
    assert not np.array_equal(weights, model.gru_.params["weight_hh_l0"])
    model.set_params(hidden_size=4)
    with pytest.raises(ValueError, match="warm_start"):
        model.fit(X, y)

    stopper = GRURegressor(hidden_size=8, max_epochs=300, early_stopping=True,
                           n_iter_no_change=3, tol=0.5, random_state=0).fit(X, y)
    assert stopper.n_iter_ < 300
    assert len(stopper.validation_scores_) == stopper.n_iter_
    assert stopper.best_validation_score_ == max(stopper.validation_scores_)


def test_verbose_prints_a_line_per_epoch(capsys):
    X, y = _sum_task(40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        GRURegressor(hidden_size=4, max_epochs=3, early_stopping=True, verbose=2,
                     random_state=0).fit(X, y)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 3
    assert "loss" in lines[0] and "validation R^2" in lines[0] and lines[0].endswith("s)")


def test_a_stopped_fit_restores_nothing_hidden():
    # gru_ is the network's own GRU: changing its arrays changes the predictions.
    X, y = _sum_task(40)
    model = GRURegressor(hidden_size=4, max_epochs=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    before = model.predict(X)
    model.head_.params["bias"] += 1.0
    np.testing.assert_allclose(model.predict(X), before + 1.0)


@pytest.mark.parametrize("X,match", [
    (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
    (np.ones((2, 3, 1, 1)), "4-D"),
    (np.ones(5), "Expected 2D array"),
    (np.empty((0, 3)), "0 sample"),
    (np.empty((3, 0)), "0 feature"),
    (np.ones((3, 4, 0)), "0 features per step"),
    ([np.ones((3, 2)), np.ones((4, 3))], "different numbers of features"),
    ([np.ones((3, 2)), np.ones((0, 2))], "X\\[1\\]"),
    ([np.ones((3, 2)), np.array([[np.inf, 0.0]])], "infinity"),
])
def test_bad_input_is_named(X, match):
    with pytest.raises(ValueError, match=match):
        GRURegressor(max_epochs=1).fit(X, np.zeros(len(X)))


@pytest.mark.parametrize("settings,error", [
    ({"solver": "rmsprop"}, ValueError), ({"dtype": "float16"}, ValueError),
    ({"hidden_size": 0}, ValueError), ({"learning_rate": -1.0}, ValueError),
    ({"validation_fraction": 1.0}, ValueError), ({"batch_size": 2.5}, TypeError),
    ({"bidirectional": "yes"}, TypeError), ({"tol": float("nan")}, ValueError),
    ({"verbose": "loud"}, TypeError), ({"max_epochs": 0}, ValueError),
])
def test_bad_parameters_are_named(settings, error):
    X, y = _sum_task(20)
    name = next(iter(settings))
    with pytest.raises(error, match=name):
        GRURegressor(**settings).fit(X, y)


def test_inputs_are_not_modified():
    X, y = _sum_task(30)
    sequences = [row[:5, None] for row in X]
    X_before, y_before = X.copy(), y.copy()
    GRURegressor(hidden_size=4, max_epochs=2).fit(X, y).predict(X)
    GRURegressor(hidden_size=4, max_epochs=2).fit(sequences, y).predict(sequences)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)


def test_verbose_uses_tqdm_when_installed(capsys):
    pytest.importorskip("tqdm")
    X, y = _sum_task(40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        GRURegressor(hidden_size=4, max_epochs=3, verbose=True, random_state=0).fit(X, y)
    captured = capsys.readouterr()
    assert "3/3" in captured.err and "loss=" in captured.err
    assert not [line for line in captured.out.splitlines() if line.startswith("epoch")]
