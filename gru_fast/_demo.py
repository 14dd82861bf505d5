"""The main job: forecast the yearly sunspot number with a GRU, against honest baselines.

Data: the yearly mean sunspot numbers 1700-2008 that statsmodels ships
(``statsmodels.datasets.sunspots``, from the Solar Influences Data Center),
read from the installed package, no network.  Each sample is a window of the
last ``WINDOW`` years; the target is the next year.  The last ``TEST_YEARS``
years are the held-out test split, touched only for the final errors: every
choice (the GRU's settings, fixed below; the autoregression's order; the
GRU's stopping epoch) is made on training data alone.

Baselines: persistence (next year = this year) and a linear autoregression
fit by least squares with NumPy, its order chosen on the last part of the
training years.  The GRU is `GRURegressor` (the PyTorch variant,
``reset_after=True``, float32, Adam), and where PyTorch is installed the same
model, optimizer, batch size and data are trained in PyTorch for the same
number of epochs (within a time budget), on the same number of threads and on
one, and timed per epoch.
"""

import time
import warnings

import numpy as np

WINDOW = 20          # years of history per sample
TEST_YEARS = 46      # held out: 1963-2008, the last four solar cycles
AR_SELECTION_YEARS = 40   # the end of the training years, to choose the AR order on
GRU_SETTINGS = dict(hidden_size=32, reset_after=True, dtype="float32", solver="adam",
                    learning_rate=0.01, batch_size=16, max_epochs=300, early_stopping=True,
                    validation_fraction=0.2, n_iter_no_change=20, random_state=0)


def load_sunspots():
    """(years, values) of statsmodels' yearly sunspot numbers."""
    try:
        from statsmodels.datasets import sunspots
    except ImportError:
        raise SystemExit("The main job reads statsmodels' sunspots data set: "
                         "pip install \".[demo]\" (statsmodels, matplotlib, scikit-learn)")
    frame = sunspots.load_pandas().data
    return frame["YEAR"].to_numpy(dtype=int), frame["SUNACTIVITY"].to_numpy(dtype=float)


def make_windows(values, window):
    """Samples (n, window) of consecutive values and the value after each."""
    samples = np.lib.stride_tricks.sliding_window_view(values[:-1], window)
    return samples, values[window:]


def rmse(prediction, truth):
    """Root mean squared error."""
    return float(np.sqrt(np.mean((np.asarray(prediction) - np.asarray(truth)) ** 2)))


def fit_autoregression(X, y, order):
    """Least-squares coefficients of y on the last `order` columns of X and a constant."""
    design = np.column_stack([X[:, -order:], np.ones(len(X))])
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    return coefficients


def predict_autoregression(coefficients, X):
    """Predictions of `fit_autoregression`'s model."""
    order = len(coefficients) - 1
    return np.column_stack([X[:, -order:], np.ones(len(X))]) @ coefficients


def choose_ar_order(X, y, selection):
    """The order (1..window) whose fit on the earlier samples best predicts the last ones."""
    errors = {}
    for order in range(1, X.shape[1] + 1):
        coefficients = fit_autoregression(X[:-selection], y[:-selection], order)
        errors[order] = rmse(predict_autoregression(coefficients, X[-selection:]),
                             y[-selection:])
    return min(errors, key=errors.get)


def torch_epoch(X, y, hidden_size, learning_rate, batch_size, threads, seed=0):
    """One epoch of the same model and optimizer in PyTorch, as a callable.

    The loop a PyTorch user writes for GRURegressor's model: ``nn.GRU`` (batch
    first, float32) over univariate sequences X (n, T), ``nn.Linear`` on the last
    layer's final state, ``MSELoss``, ``Adam``, minibatches in a fresh random order
    each epoch.  Also used by ``bench/training.py`` and the asv suite.

    Returns
    -------
    epoch : callable
        Runs one epoch.
    model : callable
        ``model(inputs)`` -> predictions, for tensors (n, T, 1).
    """
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    gru = torch.nn.GRU(1, hidden_size, batch_first=True)
    head = torch.nn.Linear(hidden_size, 1)
    optimizer = torch.optim.Adam(list(gru.parameters()) + list(head.parameters()),
                                 lr=learning_rate)
    loss_function = torch.nn.MSELoss()
    inputs = torch.from_numpy(np.ascontiguousarray(X[:, :, None], dtype=np.float32))
    targets = torch.from_numpy(np.ascontiguousarray(y[:, None], dtype=np.float32))

    def model(batch):
        return head(gru(batch)[1][-1])

    def epoch():
        order = torch.randperm(len(inputs))
        for first in range(0, len(order), batch_size):
            rows = order[first:first + batch_size]
            optimizer.zero_grad()
            loss = loss_function(model(inputs[rows]), targets[rows])
            loss.backward()
            optimizer.step()

    return epoch, model


def time_torch_epochs(X, y, epochs, settings, threads, budget_seconds=10.0):
    """Seconds per epoch of the same model and optimizer in PyTorch, or None without it.

    Runs up to `epochs` epochs on `threads` threads, each followed by a
    prediction on the validation samples (as gru_fast's early stopping does),
    stopping early once `budget_seconds` have passed (a busy machine can slow
    PyTorch's threads down a hundredfold); returns the mean time per epoch.
    """
    try:
        import torch
    except ImportError:
        return None
    n_validation = int(np.ceil(settings["validation_fraction"] * len(X)))
    epoch, model = torch_epoch(X[n_validation:], y[n_validation:], settings["hidden_size"],
                               settings["learning_rate"], settings["batch_size"], threads)
    validation = torch.from_numpy(np.ascontiguousarray(X[:n_validation, :, None],
                                                       dtype=np.float32))
    start = time.perf_counter()
    for count in range(1, epochs + 1):
        epoch()
        with torch.no_grad():
            model(validation)
        if time.perf_counter() - start > budget_seconds:
            break
    return (time.perf_counter() - start) / count


def save_plot(path, test_years, truth, forecasts, loss_curve):
    """Forecasts against the truth on the test years, and the loss curve; False without
    matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4), width_ratios=(2, 1))
    left.plot(test_years, truth, "k-", linewidth=2, label="observed")
    for label, values in forecasts.items():
        left.plot(test_years, values, label=label)
    left.set(xlabel="year", ylabel="sunspot number",
             title="One-year-ahead forecasts on the held-out years")
    left.legend()
    right.plot(np.arange(1, len(loss_curve) + 1), loss_curve)
    right.set(xlabel="epoch", ylabel="training MSE (standardised)", yscale="log",
              title="GRU training loss")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def run(plot_path="gru_fast_sunspots.png", verbose=2):
    """Run the main job, print its report; return the errors by model name."""
    from . import _core
    try:
        from .estimators import GRURegressor
    except ImportError:
        raise SystemExit("The main job trains gru_fast's scikit-learn estimator: "
                         "pip install \".[demo]\" (statsmodels, matplotlib, scikit-learn)")

    years, values = load_sunspots()
    samples, targets = make_windows(values, WINDOW)
    target_years = years[WINDOW:]
    test = np.arange(len(targets)) >= len(targets) - TEST_YEARS
    train_values = values[:len(values) - TEST_YEARS]
    mean, scale = train_values.mean(), train_values.std()
    X_train, y_train = samples[~test], targets[~test]
    X_test, y_test = samples[test], targets[test]
    print(f"Sunspots: yearly mean sunspot number {years[0]}-{years[-1]} "
          f"(statsmodels.datasets.sunspots), {len(values)} values.")
    print(f"Samples: the last {WINDOW} years -> the next year. Training targets "
          f"{target_years[~test][0]}-{target_years[~test][-1]} ({len(y_train)}), held-out "
          f"test {target_years[test][0]}-{target_years[test][-1]} ({len(y_test)}); "
          f"standardised with the training years' mean and deviation.")

    order = choose_ar_order(X_train, y_train, AR_SELECTION_YEARS)
    ar = fit_autoregression(X_train, y_train, order)
    forecasts = {"persistence": X_test[:, -1],
                 f"linear AR({order})": predict_autoregression(ar, X_test)}

    model = GRURegressor(**GRU_SETTINGS, verbose=verbose)
    print(f"\nTraining GRURegressor(hidden_size={model.hidden_size}, reset_after=True, "
          f"float32, Adam lr={model.learning_rate}, batch {model.batch_size}; early stopping "
          f"on a random {model.validation_fraction:.0%} of the training samples):")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        start = time.perf_counter()
        model.fit((X_train - mean) / scale, (y_train - mean) / scale)
        train_seconds = time.perf_counter() - start
    forecasts[f"GRU (hidden {model.hidden_size})"] = (
        model.predict((X_test - mean) / scale) * scale + mean)

    persistence_error = rmse(forecasts["persistence"], y_test)
    print(f"\nHeld-out error, {target_years[test][0]}-{target_years[test][-1]} "
          f"(RMSE in sunspot numbers; lower is better):")
    errors = {}
    for label, prediction in forecasts.items():
        errors[label] = rmse(prediction, y_test)
        print(f"  {label:26s} {errors[label]:7.2f}   "
              f"{errors[label] / persistence_error:5.2f} x persistence")

    threads = _core.max_threads()
    epochs = model.n_iter_
    print(f"\nTraining time ({epochs} epochs, gru_fast on {threads} thread(s)):")
    print(f"  gru_fast  {1e3 * train_seconds / epochs:10.2f} ms/epoch ({train_seconds:.2f} s "
          f"in all)")
    ours = train_seconds / epochs
    thread_counts = sorted({threads, 1}, reverse=True)
    for count in thread_counts:
        per_epoch = time_torch_epochs((X_train - mean) / scale, (y_train - mean) / scale,
                                      epochs, GRU_SETTINGS, count)
        if per_epoch is None:
            print("  PyTorch   not installed (pip install torch==2.13.0 to compare)")
            break
        print(f"  PyTorch   {1e3 * per_epoch:10.2f} ms/epoch on {count} thread(s), same "
              f"model, optimizer, batch size and data: gru_fast {per_epoch / ours:.1f}x "
              f"faster")
    if plot_path:
        if save_plot(plot_path, target_years[test], y_test, forecasts, model.loss_curve_):
            print(f"\nPlot saved to {plot_path}")
        else:
            print("\nNo plot: matplotlib is not installed")
    return errors
