"""scikit-learn estimators on sequences: `GRURegressor` and `GRUClassifier`.

A GRU reads each sequence; a linear head on its final state predicts one
value (or vector, or class) per sequence.  They follow scikit-learn's
``MLPRegressor`` / ``MLPClassifier``: constructor parameters stored as given,
``loss_curve_``, ``n_iter_``, early stopping on a validation fraction,
``verbose``, ``warm_start``, ``partial_fit``; ``check_estimator`` passes.

Input ``X``, one sequence per sample:

- (n_samples, T): univariate sequences of T steps, a plain table, so scalers,
  pipelines and ``check_estimator`` work as with any estimator.  Fitted on such
  a table, ``n_features_in_`` is T and later tables must have T columns.
- (n_samples, T, n_features): multivariate sequences; ``n_features_in_`` is
  n_features and any T is accepted later.
- a list of (T_i, n_features) (or (T_i,)) arrays of different lengths: padded
  and passed with ``lengths``, so padding costs nothing and a sequence predicts
  the same alone or in a batch.

Training needs scikit-learn (an optional dependency of gru_fast).
"""

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (check_array, check_consistent_length, check_is_fitted,
                                      column_or_1d, validate_data)

from ._sequences import SequenceData, pad_sequences
from ._training import (Progress, make_optimizer, minimize_lbfgs, run_epoch,
                        summed_loss_and_grad)
from ._validation import positive_int
from .losses import softmax
from .network import GRUNetwork

__all__ = ["GRURegressor", "GRUClassifier"]

_SOLVERS = ("adam", "sgd", "lbfgs")
_DTYPES = ("float32", "float64")


def _forward_all(network, data):
    """The network's outputs for every sequence of `data` (a DaskSequences: on its chunks)."""
    if hasattr(data, "forward_outputs"):
        return data.forward_outputs(network)
    return network.forward_data(data)


def _is_dask_input(X):
    """A Dask collection, or a list of them (which gru_fast.dask rejects clearly)."""
    return hasattr(X, "__dask_graph__") or (
        isinstance(X, (list, tuple)) and any(hasattr(item, "__dask_graph__") for item in X))


def _is_ragged(X):
    """True for a list/tuple of sequences whose shapes differ (not one regular array)."""
    if not isinstance(X, (list, tuple)) or len(X) < 2:
        return False
    shapes = set()
    for index, item in enumerate(X):
        try:
            shapes.add(np.shape(item))
        except ValueError as error:
            raise ValueError(f"X[{index}] is not a regular array: {error}") from None
    return len(shapes) > 1


def _check_real(value, name, low, high=None, low_inclusive=True):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if not np.isfinite(value) or value < low or (value == low and not low_inclusive) or (
            high is not None and value >= high):
        interval = f"{'[' if low_inclusive else '('}{low}, {high if high is not None else 'inf'})"
        raise ValueError(f"{name} must be in {interval}, got {value}")


class _GRUEstimator(BaseEstimator):
    """What the regressor and the classifier share: parameters, input, training."""

    _loss = None          # GRUNetwork loss: "mse" or "cross_entropy"
    _score_name = None    # what the validation score is called in progress lines

    def __init__(self, *, hidden_size=32, num_layers=1, bidirectional=False,
                 reset_after=False, dtype="float64", solver="adam", learning_rate=0.01,
                 batch_size=32, max_epochs=200, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, tol=1e-4,
                 random_state=None, verbose=False, warm_start=False):
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.reset_after = reset_after
        self.dtype = dtype
        self.solver = solver
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    # ------------------------------------------------------------------ checks
    def _check_hyperparameters(self):
        positive_int(self.hidden_size, "hidden_size")
        positive_int(self.num_layers, "num_layers")
        positive_int(self.batch_size, "batch_size")
        positive_int(self.max_epochs, "max_epochs")
        positive_int(self.n_iter_no_change, "n_iter_no_change")
        _check_real(self.learning_rate, "learning_rate", 0.0, low_inclusive=False)
        _check_real(self.validation_fraction, "validation_fraction", 0.0, 1.0,
                    low_inclusive=False)
        _check_real(self.tol, "tol", 0.0)
        if isinstance(self.verbose, (bool, np.bool_)):
            pass
        elif not isinstance(self.verbose, numbers.Integral) or self.verbose < 0:
            raise TypeError(f"verbose must be True/False or an integer >= 0, got "
                            f"{self.verbose!r}")
        for name in ("bidirectional", "reset_after", "early_stopping", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {_SOLVERS}, got {self.solver!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {self.dtype!r}")

    def _sequences(self, X, reset):
        """Validate X and pad it into SequenceData of the model's dtype.

        With ``reset`` the input layout and ``n_features_in_`` are (re)set; otherwise
        X must match the fitted ones.
        """
        dtype = np.dtype(self.dtype)
        accepted = (np.float64, np.float32)
        if _is_ragged(X):
            sequences = []
            for index, item in enumerate(X):
                name = f"X[{index}]"
                try:
                    item = check_array(item, ensure_2d=False, dtype=accepted, input_name=name)
                except ValueError as error:
                    if name in str(error):
                        raise
                    raise ValueError(f"{name}: {error}") from None
                if item.ndim == 1:
                    item = item[:, None]
                if item.ndim != 2:
                    raise ValueError(f"X[{index}] must be a sequence (T_i, n_features) or "
                                     f"(T_i,), got shape {item.shape}")
                sequences.append(item)
            widths = {item.shape[1] for item in sequences}
            if len(widths) > 1:
                raise ValueError(f"the sequences of X have different numbers of features "
                                 f"{sorted(widths)}; they must all have the same")
            data = pad_sequences(sequences, dtype)
            self._set_sequence_features(data.x.shape[2], reset)
            return data
        if hasattr(X, "ndim"):
            ndim = X.ndim
        else:
            if not isinstance(X, (list, tuple)):
                X = np.asarray(X)   # array-likes without ndim (they have __array__)
            ndim = np.ndim(X)
        if ndim == 3:
            X = check_array(X, allow_nd=True, dtype=accepted, input_name="X")
            if X.shape[2] < 1:
                raise ValueError(f"X has 0 features per step (shape {X.shape}); at least "
                                 f"1 is required")
            self._set_sequence_features(X.shape[2], reset)
            return SequenceData.from_batch_major(X.astype(dtype, copy=False))
        if ndim != 2:
            # check_array names the problem (1-D, scalar, ...) in scikit-learn's words.
            check_array(X, allow_nd=ndim > 3, dtype=accepted, input_name="X")
            raise ValueError(f"X must be (n_samples, T), (n_samples, T, n_features) or a "
                             f"list of (T_i, n_features) arrays, got {ndim}-D input")
        if reset or getattr(self, "_table_input", False):
            X = validate_data(self, X, reset=reset, dtype=accepted)
            if reset:
                self._table_input = True
        else:
            X = check_array(X, dtype=accepted, input_name="X")
            if self.gru_.input_size != 1:
                raise ValueError(
                    f"X is 2-D {X.shape}, read as univariate sequences, but "
                    f"{type(self).__name__} was fitted on sequences of "
                    f"{self.gru_.input_size} features; pass (n_samples, T, n_features)")
        # (n, T) univariate sequences -> time-major (T, n, 1)
        return SequenceData(np.ascontiguousarray(X.T.astype(dtype, copy=False))[:, :, None])

    def _set_sequence_features(self, n_features, reset):
        if reset:
            self._table_input = False
            self.n_features_in_ = n_features
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif n_features != self.gru_.input_size:
            raise ValueError(f"X has {n_features} features, but {type(self).__name__} "
                             f"is expecting {self.gru_.input_size} features as input")

    # ------------------------------------------------------------------ fitting
    def _fit(self, X, y, incremental, classes=None):
        self._check_hyperparameters()
        first_pass = not hasattr(self, "_network") or not (self.warm_start or incremental)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the "
                             f"target y is None.")
        if _is_dask_input(X):  # a Dask array: train where its chunks live
            from .dask import training_data
            data, targets = training_data(self, X, y, first_pass, classes)
        else:
            data = self._sequences(X, reset=first_pass)
            targets = self._encode_targets(y, first_pass, classes)
        check_consistent_length(np.empty(data.n_samples), targets)
        if first_pass:
            init_seed = self._start_random_streams()
            self._network = GRUNetwork(
                data.x.shape[2], self.hidden_size, self._output_size(targets),
                num_layers=self.num_layers, bidirectional=bool(self.bidirectional),
                reset_after=bool(self.reset_after), loss=self._loss, dtype=self.dtype,
                seed=init_seed)
            self.gru_ = self._network.gru
            self.head_ = self._network.head
            self.n_iter_ = 0
            self.loss_curve_ = []
            self.best_loss_ = np.inf
            self._no_improvement_count = 0
            if hasattr(self, "_optimizer"):
                del self._optimizer
        else:
            self._check_warm_network()
            self._network.adopt()   # the user may have replaced gru_/head_ arrays

        if self.solver == "lbfgs":
            self._fit_lbfgs(data, targets)
        else:
            self._fit_stochastic(data, targets, incremental)
        return self

    def _start_random_streams(self):
        """Draw from ``random_state`` the seeds of the shuffling and the validation split.

        Returns the seed of the initialisation, drawn first.
        """
        random_state = check_random_state(self.random_state)
        init_seed = random_state.randint(np.iinfo(np.int32).max)
        self._shuffle_rng = np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
        self._split_seed = random_state.randint(np.iinfo(np.int32).max)
        return init_seed

    def _check_warm_network(self):
        network = self._network
        wanted = (self.hidden_size, self.num_layers, bool(self.bidirectional),
                  bool(self.reset_after), np.dtype(self.dtype))
        have = (network.gru.hidden_size, network.gru.num_layers, network.gru.bidirectional,
                network.gru.reset_after, network.dtype)
        if wanted != have:
            raise ValueError(f"warm_start/partial_fit continues the fitted network, whose "
                             f"(hidden_size, num_layers, bidirectional, reset_after, dtype) "
                             f"are {have}; the parameters now ask for {wanted}. Set "
                             f"warm_start=False to start over.")

    def _fit_stochastic(self, data, targets, incremental):
        network = self._network
        optimizer = getattr(self, "_optimizer", None)
        if optimizer is None or self._optimizer_solver != self.solver:
            optimizer = make_optimizer(self.solver, {"flat": network.flat},
                                       self.learning_rate)
            self._optimizer, self._optimizer_solver = optimizer, self.solver
        optimizer.lr = float(self.learning_rate)

        early_stopping = self.early_stopping and not incremental
        validation = None
        if early_stopping:
            rows = np.arange(data.n_samples)
            stratify = targets if self._loss == "cross_entropy" else None
            train_rows, validation_rows = train_test_split(
                rows, test_size=self.validation_fraction, random_state=self._split_seed,
                stratify=stratify)
            if len(train_rows) == 0 or len(validation_rows) < 2:
                raise ValueError(f"early_stopping needs at least 2 validation samples and "
                                 f"1 training sample; validation_fraction="
                                 f"{self.validation_fraction} of {data.n_samples} samples "
                                 f"is too few")
            if hasattr(data, "split"):  # gru_fast.dask.DaskSequences: lazy, where chunks live
                (data, targets), validation = data.split(targets, train_rows, validation_rows)
            else:
                validation = (data.subset(validation_rows), targets[validation_rows])
                data, targets = data.subset(train_rows), targets[train_rows]
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            best_params = network.flat.copy()

        epochs = 1 if incremental else self.max_epochs
        progress = Progress(self.verbose, epochs, type(self).__name__, self._score_name)
        converged = False
        for _ in range(epochs):
            loss = run_epoch(network, optimizer, data, targets, self.batch_size,
                             self._shuffle_rng)
            if not np.isfinite(loss):
                progress.close()
                raise FloatingPointError(
                    f"the training loss became {loss} at epoch {self.n_iter_ + 1}; lower "
                    f"learning_rate (now {self.learning_rate}) or scale the inputs/targets")
            self.n_iter_ += 1
            self.loss_curve_.append(loss)
            score = None
            if early_stopping:
                score = self._validation_score(_forward_all(network, validation[0]),
                                               validation[1])
                self.validation_scores_.append(score)
                if score < self.best_validation_score_ + self.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                if score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    best_params[...] = network.flat
            else:
                if loss > self.best_loss_ - self.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                self.best_loss_ = min(self.best_loss_, loss)
            progress.update(self.n_iter_, loss, score)
            if not incremental and self._no_improvement_count > self.n_iter_no_change:
                converged = True
                break
        what = "validation score" if early_stopping else "training loss"
        progress.close(f"stopped after epoch {self.n_iter_}: {what} did not improve by "
                       f"tol={self.tol} for {self.n_iter_no_change} epochs"
                       if converged else None)
        if early_stopping:
            network.flat[...] = best_params
        if not incremental and not converged:
            warnings.warn(f"{type(self).__name__}: max_epochs={self.max_epochs} reached "
                          f"and the optimization hasn't converged yet.", ConvergenceWarning)
        if not incremental:
            self._no_improvement_count = 0

    def _full_batch_objective(self, data, targets):
        """``w -> (mean loss, gradient)`` over the whole training set, for L-BFGS.

        The summed loss and gradient of every sequence (`summed_loss_and_grad`,
        bounded memory), divided by the number of samples.  Data in a Dask
        array computes the same sum chunk by chunk where the chunks live.
        """
        network = self._network
        n_samples = data.n_samples
        if hasattr(data, "full_batch_objective"):  # gru_fast.dask.DaskSequences
            return data.full_batch_objective(network, targets)

        def objective(w):
            network.flat[...] = w
            loss, grad = summed_loss_and_grad(network, data, targets)
            return loss / n_samples, grad / n_samples

        return objective

    def _fit_lbfgs(self, data, targets):
        network = self._network
        progress = Progress(self.verbose, self.max_epochs, type(self).__name__,
                            self._score_name)
        losses = []

        def on_iteration(loss):
            losses.append(loss)
            progress.update(self.n_iter_ + len(losses), loss)

        result = minimize_lbfgs(self._full_batch_objective(data, targets), network.flat,
                                self.max_epochs, self.tol, on_iteration)
        progress.close(f"L-BFGS: {result.message}")
        network.flat[...] = result.x
        self.n_iter_ += int(result.nit)
        self.loss_curve_.extend(losses)
        self.best_loss_ = float(result.fun)
        if not np.isfinite(result.fun):
            raise FloatingPointError(f"L-BFGS ended with loss {result.fun}; scale the "
                                     f"inputs/targets")
        if result.status == 1:   # the iteration or evaluation limit
            warnings.warn(f"{type(self).__name__}: L-BFGS stopped at max_epochs="
                          f"{self.max_epochs} iterations and the optimization hasn't "
                          f"converged yet.", ConvergenceWarning)

    def _stochastic_solver(self):
        if self.solver == "lbfgs":
            raise AttributeError(f"partial_fit is only available for the stochastic "
                                 f"solvers 'adam' and 'sgd', not solver={self.solver!r}")
        return True

    # ------------------------------------------------------------------ predicting
    def _raw_outputs(self, X):
        """The network's outputs (n_samples, output_size) as float64."""
        check_is_fitted(self, "gru_")
        if _is_dask_input(X):  # a Dask array: computed where its chunks live
            from .dask import prediction_data
            return _forward_all(self._network, prediction_data(self, X)).astype(np.float64)
        data = self._sequences(X, reset=False)
        return self._network.forward_data(data).astype(np.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags




class GRURegressor(RegressorMixin, _GRUEstimator):
    """GRU regressor: a GRU reads each sequence, a linear head predicts from its final state.

    Trained on the mean squared error (``torch.nn.MSELoss``) with Adam, SGD with
    Nesterov momentum, or full-batch L-BFGS.

    Parameters
    ----------
    hidden_size : int, default 32
        Size of the GRU's state.
    num_layers : int, default 1
        Stacked GRU layers.
    bidirectional : bool, default False
        Also read every sequence backwards; the head sees both final states.
    reset_after : bool, default False
        GRU variant: False the classic GRU, True that of PyTorch / Keras / cuDNN.
    dtype : {"float32", "float64"}, default "float64"
        Floating type of the parameters and of the computation. "float32" trains
        about twice as fast; "float64" (the default, like scikit-learn's MLP) makes
        predictions independent of the batch they are computed in to ~1e-15 and
        suits "lbfgs". Predictions are returned as float64 either way.
    solver : {"adam", "sgd", "lbfgs"}, default "adam"
        "adam": `gru_fast.optim.Adam`; "sgd": `gru_fast.optim.SGD` with Nesterov
        momentum 0.9; "lbfgs": full-batch L-BFGS (``scipy.optimize.minimize``) with
        the exact gradient, for small data sets.
    learning_rate : float, default 0.01
        Step size of "adam" and "sgd".
    batch_size : int, default 32
        Sequences per minibatch of "adam" and "sgd".
    max_epochs : int, default 200
        Most passes over the data ("adam", "sgd") or L-BFGS iterations ("lbfgs").
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the training data and stop when its
        score (R^2) has not improved by ``tol`` for ``n_iter_no_change`` epochs;
        the parameters of the best epoch are kept. Stochastic solvers only.
    validation_fraction : float, default 0.1
        Part of the training data held out for early stopping, in (0, 1).
    n_iter_no_change : int, default 10
        Epochs without improvement by ``tol`` (of the training loss, or of the
        validation score with early stopping) before stopping.
    tol : float, default 1e-4
        Smallest improvement that counts; for "lbfgs" the gradient tolerance.
    random_state : None, int or numpy.random.RandomState, default None
        Seeds the initialisation, the shuffling and the validation split; an int
        makes ``fit`` deterministic.
    verbose : bool or int, default False
        Report progress per epoch (epoch, loss, validation score, time): a tqdm
        bar if tqdm is installed, else one line per epoch; ``verbose=2`` always
        prints lines.
    warm_start : bool, default False
        Continue from the fitted parameters (and optimizer state) on the next ``fit``.

    Attributes
    ----------
    gru_ : gru_fast.GRU
        The fitted recurrent layers (``batch_first=True``).
    head_ : gru_fast.linear.Linear
        The fitted head on the final state.
    loss_curve_ : list of float
        Training loss per epoch (per iteration for "lbfgs").
    n_iter_ : int
        Epochs (L-BFGS iterations) run.
    best_loss_ : float
        Smallest training loss seen.
    validation_scores_, best_validation_score_ : list of float, float
        With early stopping: validation R^2 per epoch, and the best of them.
    n_features_in_ : int
        Columns T of a 2-D X, or features per step of sequences.
    feature_names_in_ : ndarray of str
        Names of the columns, when X was a DataFrame with string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from gru_fast.estimators import GRURegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 10))
    >>> y = X[:, -3:].sum(axis=1)
    >>> model = GRURegressor(hidden_size=16, max_epochs=20, random_state=0).fit(X, y)
    >>> model.predict(X[:2]).shape
    (2,)
    """

    _loss = "mse"
    _score_name = "R^2"

    def _encode_targets(self, y, first_pass, classes=None):
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be (n_samples,) or (n_samples, n_outputs), got shape "
                             f"{y.shape}")
        targets = y.reshape(len(y), -1)
        if first_pass:
            self._y_ndim = y.ndim
        elif targets.shape[1] != self._network.output_size:
            raise ValueError(f"y has {targets.shape[1]} outputs, but the fitted network "
                             f"predicts {self._network.output_size}")
        return targets.astype(self.dtype)

    @staticmethod
    def _output_size(targets):
        return targets.shape[1]

    def _validation_score(self, outputs, targets):
        return r2_score(targets.astype(np.float64), outputs.astype(np.float64))

    def fit(self, X, y):
        """Train on sequences `X` and targets `y`.

        Parameters
        ----------
        X : array_like, (n_samples, T) or (n_samples, T, n_features), or list of arrays
            The sequences (see the module docstring); no NaN or infinity.
        y : array_like, (n_samples,) or (n_samples, n_outputs)
            Targets.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For empty, non-finite or wrongly shaped input, or bad parameters.
        """
        return self._fit(X, y, incremental=False)

    @available_if(_GRUEstimator._stochastic_solver)
    def partial_fit(self, X, y):
        """One epoch over `X`, `y`, continuing from the current parameters.

        Parameters
        ----------
        X, y
            As in :meth:`fit`.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predicted targets.

        Parameters
        ----------
        X : array_like
            Sequences, as in :meth:`fit`.

        Returns
        -------
        numpy.ndarray of float64
            (n_samples,), or (n_samples, n_outputs) when fitted on 2-D ``y``.
        """
        outputs = self._raw_outputs(X)
        return outputs[:, 0] if self._y_ndim == 1 else outputs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class GRUClassifier(ClassifierMixin, _GRUEstimator):
    """GRU classifier: a GRU reads each sequence, a softmax head on its final state.

    Trained on the cross-entropy (``torch.nn.CrossEntropyLoss``); labels of any
    type.  Parameters and fitted attributes are those of `GRURegressor`, with
    accuracy as the validation score.

    Parameters
    ----------
    hidden_size, num_layers, bidirectional, reset_after, dtype, solver, learning_rate, \
batch_size, max_epochs, early_stopping, validation_fraction, n_iter_no_change, tol, \
random_state, verbose, warm_start
        See `GRURegressor`.

    Attributes
    ----------
    classes_ : numpy.ndarray
        The class labels, sorted.
    gru_, head_, loss_curve_, n_iter_, best_loss_, validation_scores_, \
best_validation_score_, n_features_in_, feature_names_in_
        See `GRURegressor`.

    Examples
    --------
    >>> import numpy as np
    >>> from gru_fast.estimators import GRUClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 10))
    >>> y = np.where(X[:, -1] > 0, "up", "down")
    >>> model = GRUClassifier(hidden_size=16, max_epochs=20, random_state=0).fit(X, y)
    >>> model.classes_
    array(['down', 'up'], dtype='<U4')
    """

    _loss = "cross_entropy"
    _score_name = "accuracy"

    def _encode_targets(self, y, first_pass, classes=None):
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if first_pass:
            if classes is None:
                classes = np.unique(y)
            else:
                classes = np.unique(np.asarray(classes))
            if len(classes) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 "
                                 f"classes in y, got 1 class ({classes[0]!r})")
            if getattr(self, "warm_start", False) and hasattr(self, "classes_") and \
                    hasattr(self, "_network") and not np.array_equal(classes, self.classes_):
                raise ValueError(f"warm_start can only be used where y has the same "
                                 f"classes as in the previous call to fit; had "
                                 f"{self.classes_}, got {classes}")
            self.classes_ = classes
        unknown = ~np.isin(y, self.classes_)
        if unknown.any():
            raise ValueError(f"y has labels {np.unique(y[unknown])} that are not in "
                             f"classes_ {self.classes_}")
        return np.searchsorted(self.classes_, y).astype(np.int64)

    def _output_size(self, targets):
        return len(self.classes_)

    def _validation_score(self, outputs, targets):
        return accuracy_score(targets, outputs.argmax(axis=1))

    def fit(self, X, y):
        """Train on sequences `X` and labels `y`.

        Parameters
        ----------
        X : array_like, (n_samples, T) or (n_samples, T, n_features), or list of arrays
            The sequences (see the module docstring); no NaN or infinity.
        y : array_like, (n_samples,)
            Class labels of any type; at least two classes.

        Returns
        -------
        self
        """
        return self._fit(X, y, incremental=False)

    @available_if(_GRUEstimator._stochastic_solver)
    def partial_fit(self, X, y, classes=None):
        """One epoch over `X`, `y`, continuing from the current parameters.

        Parameters
        ----------
        X, y
            As in :meth:`fit`.
        classes : array_like, optional
            Every class label; required on the first call (``y`` of one call may
            not show them all), ignored afterwards.

        Returns
        -------
        self
        """
        if not hasattr(self, "_network") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X):
        """Class probabilities (softmax of the head's logits).

        Parameters
        ----------
        X : array_like
            Sequences, as in :meth:`fit`.

        Returns
        -------
        numpy.ndarray of float64, shape (n_samples, n_classes)
            Columns in the order of ``classes_``; rows sum to 1.
        """
        return softmax(self._raw_outputs(X))

    def predict(self, X):
        """Most probable class of every sequence.

        Parameters
        ----------
        X : array_like
            Sequences, as in :meth:`fit`.

        Returns
        -------
        numpy.ndarray, shape (n_samples,)
            Labels from ``classes_``.
        """
        outputs = self._raw_outputs(X)
        return self.classes_[outputs.argmax(axis=1)]
