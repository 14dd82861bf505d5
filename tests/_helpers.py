"""What the test files share: the tolerances, one assert_close, the problem builders.

Import with ``from _helpers import ...`` (pytest puts tests/ on the path). New test files
should use these rather than a table or builder of their own.
"""

import threading

import numpy as np

GRAD_NAMES = ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")

#: (rtol, atol) of each kind of comparison, per dtype. An atol of None means
#: rtol times the largest |expected|: a relative error measured against the scale of
#: the whole array, so that elements near zero are not held to a relative bound.
TOLERANCE = {
    # gru_fast (any path) against the NumPy reference: y and h_n of one layer ...
    "output": {np.float32: (2e-4, None), np.float64: (1e-9, None)},
    # ... gradients, and stacked layers (errors compound over layers and backward)
    "gradient": {np.float32: (2e-4, None), np.float64: (1e-8, None)},
    # gru_fast or the reference against PyTorch, Keras or ONNX Runtime
    "peer": {np.float32: (1e-4, 2e-5), np.float64: (1e-10, 1e-12)},
    # float64 results of the same math summed in another order (a row alone, reversed)
    "reordered": {np.float64: (1e-12, 1e-14)},
    # float64 weight gradients summed over rows run alone
    "row_sums": {np.float64: (1e-10, 1e-12)},
    # analytic gradients against central finite differences (float64, eps = 1e-6)
    "finite_difference": {np.float64: (1e-6, 1e-8)},
    # float32 results of the same inputs rounded differently (the float32 reference
    # against the float64 one, a bias folded into another): outputs, then gradients
    "float32_rounding": {np.float32: (1e-5, 1e-6)},
    "float32_rounding_gradient": {np.float32: (1e-4, 1e-5)},
}


def tolerance(kind, dtype):
    """(rtol, atol) of ``kind`` for ``dtype``, atol None meaning relative to the scale."""
    return TOLERANCE[kind][np.dtype(dtype).type]


def assert_close(actual, expected, name="", kind="output", check_dtype=True):
    """Assert ``actual`` equals ``expected`` (same shape and dtype) within TOLERANCE[kind].

    The tolerance is looked up by ``actual``'s dtype. ``check_dtype=False`` for a
    comparison across dtypes (the float32 reference against the float64 one).
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (name, actual.shape, expected.shape)
    if check_dtype:
        assert actual.dtype == expected.dtype, (name, actual.dtype, expected.dtype)
    rtol, atol = tolerance(kind, actual.dtype)
    if atol is None:
        atol = rtol * max(float(np.max(np.abs(expected), initial=0.0)), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=name)


# ------------------------------------------------------------------------------ problems

def make_weights(rng, input_size, hidden_size, dtype, bias=True):
    """weight_ih, weight_hh and (with bias) bias_ih, bias_hh, uniform in +-2/sqrt(H).

    Twice torch's initial range: the gates leave their linear region, as in a trained
    layer.
    """
    scale = 1.0 / np.sqrt(hidden_size)

    def uniform(*shape):
        return rng.uniform(-2 * scale, 2 * scale, shape).astype(dtype)

    weights = {"weight_ih": uniform(3 * hidden_size, input_size),
               "weight_hh": uniform(3 * hidden_size, hidden_size)}
    if bias:
        weights.update(bias_ih=uniform(3 * hidden_size), bias_hh=uniform(3 * hidden_size))
    return weights


def make_problem(rng, seq_len, batch_size, input_size, hidden_size, dtype=np.float64,
                 bias=True, with_h0=True):
    """Keyword arguments of gru_forward: x (T, B, I), h0 (B, H) or None, the weights.

    The biases are None without ``bias``.
    """
    x = rng.standard_normal((seq_len, batch_size, input_size)).astype(dtype)
    h0 = rng.standard_normal((batch_size, hidden_size)).astype(dtype) if with_h0 else None
    weights = make_weights(rng, input_size, hidden_size, dtype, bias)
    return {"x": x, "h0": h0, "weight_ih": weights["weight_ih"],
            "weight_hh": weights["weight_hh"], "bias_ih": weights.get("bias_ih"),
            "bias_hh": weights.get("bias_hh")}


def make_layer_inputs(layer, rng, seq_len, batch_size):
    """x, h0, dy and dh_n for a GRU layer (its dtype, layout and directions)."""
    dtype = layer.dtype
    directions = 2 if layer.bidirectional else 1
    if layer.batch_first:
        shape = (batch_size, seq_len, layer.input_size)
    else:
        shape = (seq_len, batch_size, layer.input_size)
    x = rng.standard_normal(shape).astype(dtype)
    h0 = rng.standard_normal((layer.num_layers * directions, batch_size,
                              layer.hidden_size)).astype(dtype)
    dy = rng.standard_normal(shape[:2] + (directions * layer.hidden_size,)).astype(dtype)
    dh_n = rng.standard_normal(h0.shape).astype(dtype)
    return x, h0, dy, dh_n


def random_layer(num_layers=1, *, bidirectional=False, batch_first=False, bias=True,
                 reset_after=False, dtype=np.float32, input_size=5, hidden_size=4, seed=0):
    """A gru_fast GRU whose every parameter (bias_hh too) is standard normal.

    Distinct nonzero values everywhere, so that a converter that swaps or drops a
    block cannot go unnoticed.
    """
    from gru_fast.layer import GRU

    layer = GRU(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                bidirectional=bidirectional, reset_after=reset_after, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1)
    layer.load_state_dict(
        {name: rng.standard_normal(v.shape).astype(dtype) for name, v in layer.params.items()}
    )
    return layer


def assert_same_params(a, b):
    """Two layers hold the same parameter names, dtypes and values, bit for bit."""
    assert set(a.params) == set(b.params)
    for name, value in a.params.items():
        assert b.params[name].dtype == value.dtype, name
        np.testing.assert_array_equal(b.params[name], value, err_msg=name)


def numeric_gradient(function, array, eps=1e-6):
    """Central finite differences of the scalar ``function()`` with respect to ``array``.

    ``array`` is perturbed in place, one element at a time, and restored exactly.
    """
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + eps
        plus = function()
        array[index] = saved - eps
        minus = function()
        array[index] = saved
        grad[index] = (plus - minus) / (2 * eps)
    return grad


# ------------------------------------------------------------------------------- threads

def run_in_threads(work, count):
    """Call ``work(0)`` .. ``work(count - 1)`` at once, one Python thread each.

    The threads start together (a barrier), so the calls overlap; the first exception
    any of them raised is raised here.
    """
    barrier = threading.Barrier(count)
    errors = []

    def run(index):
        try:
            barrier.wait()
            work(index)
        except BaseException as error:  # noqa: BLE001  (handed to the caller)
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def core_gradients(problem, reset_after, dy):
    """gru_fast's forward with a cache, then backward with dy and dh_n = 1: the grads dict."""
    import gru_fast

    _, h_n, cache = gru_fast.gru_forward(**problem, reset_after=reset_after,
                                         return_cache=True)
    return gru_fast.gru_backward(cache, dy, np.ones_like(h_n))


def assert_runs_bitwise_equal(runs, label=""):
    """Every gradients dict of `runs` equals the first bit for bit (None where it is None)."""
    for grads in runs[1:]:
        for name in GRAD_NAMES:
            if runs[0][name] is None:
                assert grads[name] is None
            else:
                np.testing.assert_array_equal(grads[name], runs[0][name],
                                              err_msg=f"{name} {label}")


def assert_forward_runs_match(runs, problem, reset_after, reverse, tol, label=""):
    """Forward runs of `problem`, each (y, h_n, gates): all equal to the first bit for bit,
    and the first within `tol` of the NumPy reference."""
    from gru_fast import reference

    for run in runs[1:]:
        for name, got, expected in zip(("y", "h_n", "gates"), run, runs[0]):
            np.testing.assert_array_equal(got, expected, err_msg=f"{name} {label}")
    y_ref, h_ref = reference.gru_forward(**problem, reset_after=reset_after, reverse=reverse)
    np.testing.assert_allclose(runs[0][0], y_ref, rtol=tol, atol=tol, err_msg=f"y {label}")
    np.testing.assert_allclose(runs[0][1], h_ref, rtol=tol, atol=tol, err_msg=f"h_n {label}")


def assert_gradients_on_thread_counts(monkeypatch, problem, reset_after, dy, tol, label=""):
    """Gradients of `problem` on 1, 2 and 3 core threads: bitwise equal, and the reference's.

    The caller forces the threads on (``_core._force_threads(True)``) so that pieces
    really run on the workers.
    """
    import gru_fast

    runs = []
    for threads in (1, 2, 3):
        monkeypatch.setattr(gru_fast.functional, "core_threads", lambda: threads)
        runs.append(core_gradients(problem, reset_after, dy))
    assert_runs_bitwise_equal(runs, label)
    assert_grads_match_reference(runs[0], problem, reset_after, dy, tol, label)


def assert_configs_on_thread_counts(monkeypatch, rng, configs, dtype, reset_after, with_dy,
                                    tol, label=""):
    """`assert_gradients_on_thread_counts` for each (T, B, I, H) of `configs`, the core's
    threads forced on: the second with random lengths (some 0), the third reversed and
    without biases, dy random or None."""
    from gru_fast import _core

    _core._force_threads(True)
    try:
        for index, shape in enumerate(configs):
            problem = make_problem(rng, *shape, dtype=dtype, bias=index != 2)
            if index == 1:
                problem["lengths"] = rng.integers(0, shape[0] + 1, shape[1])
            if index == 2:
                problem["reverse"] = True
            dy = (rng.standard_normal((shape[0], shape[1], shape[3])).astype(dtype)
                  if with_dy else None)
            assert_gradients_on_thread_counts(monkeypatch, problem, reset_after, dy, tol,
                                              (label, shape))
    finally:
        _core._force_threads(None)


def assert_grads_match_reference(grads, problem, reset_after, dy, tol, label=""):
    """`grads` against the NumPy reference's backward of the same problem (dh_n = 1)."""
    from gru_fast import reference

    _, h_n, cache = reference.gru_forward(**problem, reset_after=reset_after,
                                          return_cache=True)
    expected = reference.gru_backward(cache, dy, np.ones_like(h_n))
    for name in GRAD_NAMES:
        if expected[name] is not None:
            scale = max(1.0, float(np.abs(expected[name]).max()))
            np.testing.assert_allclose(grads[name], expected[name], rtol=tol,
                                       atol=tol * scale, err_msg=f"{name} {label}")
