r"""Pure-NumPy reference GRU: the oracle every fast path is tested against.

This module implements the equations below (the contract every path of gru_fast
follows) literally, with a Python loop over time. It is meant to be read, not to be
fast.

Conventions
-----------
Row vectors, time-major: ``x[t]`` has shape (B, I), the hidden size is H and σ is the
logistic sigmoid. The gate rows of the weights are stacked in the order reset ``r``,
update ``z``, candidate ``n`` (PyTorch's ``nn.GRU`` order)::

    W_ir = weight_ih[0:H]    W_iz = weight_ih[H:2H]    W_in = weight_ih[2H:3H]
    W_hr = weight_hh[0:H]    W_hz = weight_hh[H:2H]    W_hn = weight_hh[2H:3H]

and likewise ``b_ir, b_iz, b_in`` (from ``bias_ih``) and ``b_hr, b_hz, b_hn`` (from
``bias_hh``). A missing bias counts as zeros.

Equations
---------
::

    r_t = σ(x_t W_ir^T + b_ir + h_{t-1} W_hr^T + b_hr)
    z_t = σ(x_t W_iz^T + b_iz + h_{t-1} W_hz^T + b_hz)

    reset_after=False:  n_t = tanh(x_t W_in^T + b_in + (r_t ∘ h_{t-1}) W_hn^T + b_hn)
    reset_after=True:   n_t = tanh(x_t W_in^T + b_in + r_t ∘ (h_{t-1} W_hn^T + b_hn))

    h_t = z_t ∘ h_{t-1} + (1 − z_t) ∘ n_t

Variable lengths follow PyTorch's packed sequences: row ``b`` runs steps
``0 .. lengths[b] - 1`` only (from ``lengths[b] - 1`` down to ``0`` when
``reverse=True``), each output is written at its own time index, ``y[t, b] = 0`` for
``t >= lengths[b]`` and ``h_n[b]`` is the state after the row's last valid step
(``h0[b]`` when ``lengths[b] == 0``). At every step a row is *active* when
``lengths[b] > t``; inactive rows keep their state.

Backward is plain backpropagation through time over the same loop, run in the
opposite order. Gradients arriving through padded positions of ``dy`` are ignored;
an inactive row passes its incoming state gradient through unchanged.
"""

import numpy as np

from ._validation import as_float_array, check_flag, check_shape, validate_forward_args

__all__ = ["gru_forward", "gru_backward"]


def _sigmoid(a):
    """Logistic sigmoid without overflow for large ``|a|``, in the dtype of ``a``."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)


def gru_forward(
    x,
    h0,
    weight_ih,
    weight_hh,
    bias_ih=None,
    bias_hh=None,
    *,
    reset_after=False,
    lengths=None,
    reverse=False,
    return_cache=False,
    return_sequences=True,
):
    """Run one GRU layer in one direction over a whole sequence.

    Parameters
    ----------
    x : ndarray of shape (T, B, I)
        Input sequence, time-major.
    h0 : ndarray of shape (B, H) or None
        Initial hidden state; ``None`` means zeros.
    weight_ih : ndarray of shape (3H, I)
        Input-to-hidden weights, gate rows stacked as r, z, n.
    weight_hh : ndarray of shape (3H, H)
        Hidden-to-hidden weights, gate rows stacked as r, z, n. Its dtype (float32 or
        float64) is the dtype of the computation (the other weights' when it is a
        list): arrays of another dtype raise ``TypeError``, lists are converted to it.
    bias_ih, bias_hh : ndarray of shape (3H,) or None
        Input and hidden biases, both given or both ``None`` (no bias).
    reset_after : bool, default False
        ``False``: classic GRU, ``n_t = tanh(x W_in^T + b_in + (r ∘ h) W_hn^T + b_hn)``.
        ``True``: PyTorch/cuDNN form, ``n_t = tanh(x W_in^T + b_in + r ∘ (h W_hn^T + b_hn))``.
    lengths : array_like of int, shape (B,), optional
        Valid length of each batch row, ``0 <= lengths[b] <= T``, in any order.
        ``None`` means every row has length T.
    reverse : bool, default False
        Run each row backwards in time, from ``lengths[b] - 1`` down to 0.
    return_cache : bool, default False
        Also return the cache that :func:`gru_backward` needs.
    return_sequences : bool, default True
        ``False``: return ``None`` in place of ``y`` (only the final states).

    Returns
    -------
    y : ndarray of shape (T, B, H), or None
        Hidden state of every step at its own time index; zero at padded positions.
        ``None`` when ``return_sequences`` is false.
    h_n : ndarray of shape (B, H)
        State after each row's last valid step (``h0`` for rows of length 0).
    cache : dict
        Only when ``return_cache`` is true. Keys:

        - ``"x"``, ``"h0"``, ``"weight_ih"``, ``"weight_hh"``, ``"bias_ih"``,
          ``"bias_hh"``: private copies of the inputs in the compute dtype (``h0`` is
          zeros when it was ``None``; biases are zeros when absent).
        - ``"r"``, ``"z"``, ``"n"``, ``"h_prev"``: (T, B, H) per-step gates and the
          state each step started from, indexed by time (values at inactive
          positions are computed but unused).
        - ``"hn_pre"``: (T, B, H) ``h_{t-1} W_hn^T + b_hn`` for ``reset_after=True``,
          ``None`` otherwise.
        - ``"active"``: (T, B) bool, ``lengths[b] > t``.
        - ``"reset_after"``, ``"reverse"``: the flags of the call.
        - ``"lengths"``: int64 (B,) array or ``None``.
        - ``"has_bias"``, ``"has_h0"``: whether biases / ``h0`` were given.
        - ``"shape"``: ``(T, B, I, H)``; ``"dtype"``: the compute dtype.

    Raises
    ------
    TypeError
        If ``weight_ih`` is not float32 or float64.
    ValueError
        If a shape is obviously wrong, only one bias is given, or ``lengths`` is out
        of range.
    """
    args = validate_forward_args(x, h0, weight_ih, weight_hh, bias_ih, bias_hh,
                                 reset_after, lengths, reverse)
    return_cache = check_flag(return_cache, "return_cache")
    return_sequences = check_flag(return_sequences, "return_sequences")
    T, B, I, H = args.dims
    dtype = args.weight_hh.dtype
    x, weight_ih, weight_hh = args.x, args.weight_ih, args.weight_hh
    reset_after, reverse = args.reset_after, args.reverse
    has_bias = args.bias_ih is not None
    bias_ih = args.bias_ih if has_bias else np.zeros(3 * H, dtype=dtype)
    bias_hh = args.bias_hh if has_bias else np.zeros(3 * H, dtype=dtype)
    has_h0 = args.h0 is not None
    h0 = args.h0 if has_h0 else np.zeros((B, H), dtype=dtype)
    length_array = args.lengths
    if length_array is None:
        active = np.ones((T, B), dtype=bool)
    else:
        active = np.arange(T)[:, None] < length_array[None, :]

    W_ir, W_iz, W_in = weight_ih[:H], weight_ih[H : 2 * H], weight_ih[2 * H :]
    W_hr, W_hz, W_hn = weight_hh[:H], weight_hh[H : 2 * H], weight_hh[2 * H :]
    b_ir, b_iz, b_in = bias_ih[:H], bias_ih[H : 2 * H], bias_ih[2 * H :]
    b_hr, b_hz, b_hn = bias_hh[:H], bias_hh[H : 2 * H], bias_hh[2 * H :]

    y = np.zeros((T, B, H), dtype=dtype)
    r_all = np.zeros((T, B, H), dtype=dtype)
    z_all = np.zeros((T, B, H), dtype=dtype)
    n_all = np.zeros((T, B, H), dtype=dtype)
    h_prev_all = np.zeros((T, B, H), dtype=dtype)
    hn_pre_all = np.zeros((T, B, H), dtype=dtype) if reset_after else None

    h = h0.copy()
    steps = range(T - 1, -1, -1) if reverse else range(T)
    for t in steps:
        x_t = x[t]
        h_prev = h
        r = _sigmoid(x_t @ W_ir.T + b_ir + h_prev @ W_hr.T + b_hr)
        z = _sigmoid(x_t @ W_iz.T + b_iz + h_prev @ W_hz.T + b_hz)
        if reset_after:
            hn_pre = h_prev @ W_hn.T + b_hn
            n = np.tanh(x_t @ W_in.T + b_in + r * hn_pre)
            hn_pre_all[t] = hn_pre
        else:
            n = np.tanh(x_t @ W_in.T + b_in + (r * h_prev) @ W_hn.T + b_hn)
        h_new = z * h_prev + (1 - z) * n

        is_active = active[t][:, None]
        h = np.where(is_active, h_new, h_prev)
        y[t] = np.where(is_active, h_new, 0)
        r_all[t], z_all[t], n_all[t], h_prev_all[t] = r, z, n, h_prev

    h_n = np.array(h, dtype=dtype, copy=True)
    if not return_sequences:
        y = None  # the oracle computes every step's output anyway, then drops it
    if not return_cache:
        return y, h_n
    cache = {
        "x": x.copy(),
        "h0": h0.copy(),
        "weight_ih": weight_ih.copy(),
        "weight_hh": weight_hh.copy(),
        "bias_ih": bias_ih.copy(),
        "bias_hh": bias_hh.copy(),
        "r": r_all,
        "z": z_all,
        "n": n_all,
        "h_prev": h_prev_all,
        "hn_pre": hn_pre_all,
        "active": active,
        "reset_after": bool(reset_after),
        "reverse": bool(reverse),
        "lengths": length_array,
        "has_bias": has_bias,
        "has_h0": has_h0,
        "shape": (T, B, I, H),
        "dtype": dtype,
    }
    return y, h_n, cache


def gru_backward(cache, dy, dh_n=None, *, input_grad=True):
    """Backpropagate through time for a forward call made with ``return_cache=True``.

    Parameters
    ----------
    cache : dict
        The cache returned by :func:`gru_forward`. It is not modified.
    dy : ndarray of shape (T, B, H) or None
        Gradient of the loss with respect to ``y``. Entries at padded positions
        (``t >= lengths[b]``) are ignored. ``None`` means zeros.
    dh_n : ndarray of shape (B, H) or None
        Gradient of the loss with respect to ``h_n``; ``None`` means zeros.
    input_grad : bool, default True
        False returns ``None`` for ``"x"`` (the first layer of a network being
        trained needs no gradient with respect to its input).

    Returns
    -------
    grads : dict
        Fresh arrays in the forward dtype, keyed ``"x"`` (T, B, I), ``"h0"`` (B, H),
        ``"weight_ih"`` (3H, I), ``"weight_hh"`` (3H, H), ``"bias_ih"`` and
        ``"bias_hh"`` (3H,). The bias gradients are ``None`` when the forward had no
        bias. ``"h0"`` is returned even when the forward had ``h0=None``; it is then
        the gradient with respect to the zero initial state.

    Raises
    ------
    ValueError
        If ``dy`` or ``dh_n`` does not match the shapes recorded in the cache.
    """
    T, B, I, H = cache["shape"]
    dtype = cache["dtype"]
    if dy is None:
        dy = np.zeros((T, B, H), dtype=dtype)
    else:
        dy = as_float_array(dy, "dy", 3, dtype)
        check_shape(dy, (T, B, H), "dy", "(T, B, H) of the forward call that made the cache")
    if dh_n is None:
        dh_n = np.zeros((B, H), dtype=dtype)
    else:
        dh_n = as_float_array(dh_n, "dh_n", 2, dtype)
        check_shape(dh_n, (B, H), "dh_n", "(B, H) of the forward call that made the cache")

    reset_after = cache["reset_after"]
    x, active = cache["x"], cache["active"]
    weight_ih, weight_hh = cache["weight_ih"], cache["weight_hh"]
    W_hr, W_hz, W_hn = weight_hh[:H], weight_hh[H : 2 * H], weight_hh[2 * H :]

    dx = np.zeros((T, B, I), dtype=dtype)
    d_weight_ih = np.zeros((3 * H, I), dtype=dtype)
    d_weight_hh = np.zeros((3 * H, H), dtype=dtype)
    d_bias_ih = np.zeros(3 * H, dtype=dtype)
    d_bias_hh = np.zeros(3 * H, dtype=dtype)

    dh_carry = dh_n.copy()
    # Backward visits the steps in the opposite order of the forward.  Only the
    # rows that ran step t take part in it: they are selected (never multiplied
    # by a 0/1 mask), so whatever sits at padded positions of dy or x, even NaN,
    # cannot reach a gradient.
    steps = range(T) if cache["reverse"] else range(T - 1, -1, -1)
    for t in steps:
        rows = active[t]  # (B,) bool: the rows that ran step t
        r, z, n = cache["r"][t][rows], cache["z"][t][rows], cache["n"][t][rows]
        h_prev = cache["h_prev"][t][rows]

        dh = dh_carry[rows] + dy[t][rows]
        dz = dh * (h_prev - n)
        dn = dh * (1 - z)
        da_n = dn * (1 - n * n)
        da_z = dz * z * (1 - z)
        if reset_after:
            hn_pre = cache["hn_pre"][t][rows]
            dr = da_n * hn_pre
            da_hn = da_n * r  # gradient of h_prev W_hn^T + b_hn
            dh_prev_through_n = da_hn @ W_hn
            hn_input = h_prev  # what multiplies W_hn
        else:
            q = r * h_prev
            dq = da_n @ W_hn
            dr = dq * h_prev
            da_hn = da_n  # gradient of q W_hn^T + b_hn
            dh_prev_through_n = dq * r
            hn_input = q
        da_r = dr * r * (1 - r)

        d_gates_ih = np.concatenate([da_r, da_z, da_n], axis=1)  # (rows, 3H)
        d_gates_hh = np.concatenate([da_r, da_z, da_hn], axis=1)  # (rows, 3H)

        dx[t][rows] = d_gates_ih @ weight_ih  # padded rows of dx stay 0
        d_weight_ih += d_gates_ih.T @ x[t][rows]
        d_bias_ih += d_gates_ih.sum(axis=0)
        d_weight_hh[: 2 * H] += np.concatenate([da_r, da_z], axis=1).T @ h_prev
        d_weight_hh[2 * H :] += da_hn.T @ hn_input
        d_bias_hh += d_gates_hh.sum(axis=0)

        # A row that did not run step t kept its state: its gradient passes unchanged.
        dh_carry[rows] = dh * z + da_r @ W_hr + da_z @ W_hz + dh_prev_through_n

    has_bias = cache["has_bias"]
    return {
        "x": dx if input_grad else None,
        "h0": dh_carry.astype(dtype, copy=True),
        "weight_ih": d_weight_ih,
        "weight_hh": d_weight_hh,
        "bias_ih": d_bias_ih if has_bias else None,
        "bias_hh": d_bias_hh if has_bias else None,
    }


from .layer import GRU as _GRULayer  # noqa: E402  (bottom import: layer does not import reference)
class GRU(_GRULayer):
    """GRU layer computed with the reference functions (same API as gru_fast.GRU)."""
    _forward_fn = staticmethod(gru_forward)
    _backward_fn = staticmethod(gru_backward)
