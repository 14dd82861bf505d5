"""First-order optimizers over a dict of NumPy parameters, updated in place.

Each optimizer is bound to a dict of parameters (``name -> ndarray``, e.g.
``GRU.params``) when it is made and keeps its state (momentum buffers, moment
estimates) per name; ``step(grads)`` takes a dict with the same names and
updates every parameter array in place, so views and references to them stay
valid.  The update rules are those of ``torch.optim.SGD``, ``torch.optim.Adam``
and ``torch.optim.AdamW`` (their defaults, without ``amsgrad`` or
``maximize``), and the tests check them step for step against PyTorch.

`clip_grad_norm` rescales a dict of gradients in place to a maximum global
norm, like ``torch.nn.utils.clip_grad_norm_``.

Examples
--------
>>> import numpy as np, gru_fast
>>> from gru_fast import optim
>>> gru = gru_fast.GRU(4, 8, seed=0)
>>> optimizer = optim.Adam(gru.params, lr=1e-3)
>>> x = np.ones((5, 2, 4), dtype=np.float32)
>>> y, h_n, cache = gru.forward(x, return_cache=True)
>>> _, _, grads = gru.backward(cache, np.ones_like(y))
>>> norm = optim.clip_grad_norm(grads, max_norm=1.0)
>>> optimizer.step(grads)
"""

import math
import numbers

import numpy as np

try:  # Adam's update in one pass (src/_optim_kernels.pyx), the NumPy code's bits
    from . import _optim_kernels
except ImportError:  # a checkout whose extensions are not built
    _optim_kernels = None

# Tests set this False to run the NumPy code of every update.
USE_FUSED_UPDATES = True

__all__ = ["SGD", "Adam", "AdamW", "clip_grad_norm"]


def _check_number(value, name, *, low=0.0, low_inclusive=True, high=None):
    """`value` as a float in the allowed range, or a ValueError/TypeError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    too_low = value < low if low_inclusive else value <= low
    if not math.isfinite(value) or too_low or (high is not None and value >= high):
        bound = f"{'>=' if low_inclusive else '>'} {low}"
        if high is not None:
            bound += f" and < {high}"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return value


def _check_params(params):
    """The dict of parameters an optimizer updates: writable float ndarrays."""
    if not isinstance(params, dict) or not params:
        raise TypeError(f"params must be a non-empty dict of name -> numpy.ndarray, got "
                        f"{type(params).__name__}")
    for name, value in params.items():
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise TypeError(f"params[{name!r}] must be a floating numpy.ndarray, got "
                            f"{type(value).__name__} {getattr(value, 'dtype', '')}")
        if not value.flags.writeable:
            raise ValueError(f"params[{name!r}] is read-only; an optimizer updates its "
                             f"parameters in place")
    return params


def _check_grads(grads, params):
    """Gradients keyed like `params`, each an array of its parameter's shape."""
    if not hasattr(grads, "keys"):
        raise TypeError(f"grads must be a dict of name -> numpy.ndarray, got "
                        f"{type(grads).__name__}")
    if set(grads.keys()) != set(params.keys()):
        missing = sorted(set(params) - set(grads))
        unexpected = sorted(set(grads) - set(params))
        raise ValueError(f"grads must have the keys of params; missing {missing}, "
                         f"unexpected {unexpected}")
    checked = {}
    for name, param in params.items():
        grad = np.asarray(grads[name])
        if grad.shape != param.shape:
            raise ValueError(f"grads[{name!r}] has shape {grad.shape}, expected "
                             f"{param.shape} (the shape of params[{name!r}])")
        checked[name] = grad
    return checked


def clip_grad_norm(grads, max_norm):
    """Scale all gradients in place so that their global 2-norm is at most `max_norm`.

    The global norm is that of every gradient concatenated into one vector, as
    in ``torch.nn.utils.clip_grad_norm_``; when it exceeds `max_norm` every
    gradient is multiplied by ``max_norm / (norm + 1e-6)``.

    Parameters
    ----------
    grads : dict of str to numpy.ndarray
        Gradients, modified in place (so they must be writable arrays).
    max_norm : float
        Largest allowed global norm, > 0.

    Returns
    -------
    float
        The global norm before clipping (``inf`` or ``nan`` if a gradient is not finite;
        then nothing is scaled).
    """
    max_norm = _check_number(max_norm, "max_norm", low_inclusive=False)
    if not hasattr(grads, "values"):
        raise TypeError(f"grads must be a dict of name -> numpy.ndarray, got "
                        f"{type(grads).__name__}")
    # norm = sqrt(sum over every gradient of sum(g * g)), accumulated in float64
    squares = 0.0
    for grad in grads.values():
        flat = np.asarray(grad).ravel()
        squares += float(np.dot(flat, flat))
    total_norm = math.sqrt(squares)
    if math.isfinite(total_norm) and total_norm > max_norm:
        scale = max_norm / (total_norm + 1e-6)
        for grad in grads.values():
            grad *= grad.dtype.type(scale)
    return total_norm


class _Optimizer:
    """Common part: the bound parameters, the step count, the per-name state."""

    _STATE_KEYS = ()  # the per-parameter buffers a step keeps (state_dict)

    def __init__(self, params, lr):
        self.params = _check_params(params)
        self.lr = _check_number(lr, "lr")
        self.step_count = 0
        self.state = {name: {} for name in params}

    def step(self, grads):
        """Update every parameter in place from its gradient.

        Parameters
        ----------
        grads : dict of str to numpy.ndarray
            One gradient per parameter, same names and shapes as ``params``.
            Not modified.

        Raises
        ------
        ValueError
            If the names or shapes do not match ``params``.
        """
        grads = _check_grads(grads, self.params)
        self.step_count += 1
        for name, param in self.params.items():
            grad = grads[name]
            if grad.dtype != param.dtype:
                grad = grad.astype(param.dtype)
            self._update(param, grad, self.state[name])

    def _update(self, param, grad, state):
        raise NotImplementedError

    # Per-parameter state that is only scratch (not needed to continue exactly).
    _SCRATCH_KEYS = ("scratch",)

    def state_dict(self):
        """What the next `step` depends on besides the parameters: step count and moments.

        Returns
        -------
        dict
            ``{"step_count": int, "state": {name: {key: array}}}``: copies of
            the per-parameter buffers (Adam's ``exp_avg`` and ``exp_avg_sq``,
            SGD's ``momentum_buffer``; empty before the first step).  With
            `load_state_dict` on an optimizer of the same class and settings
            over parameters of the same shapes, the following steps are
            exactly those this optimizer would take.
        """
        return {"step_count": self.step_count,
                "state": {name: {key: value.copy() for key, value in state.items()
                                 if key not in self._SCRATCH_KEYS}
                          for name, state in self.state.items()}}

    def load_state_dict(self, state_dict):
        """Continue from a `state_dict` (copied in; checked against the parameters).

        Parameters
        ----------
        state_dict : dict
            As returned by `state_dict`.

        Raises
        ------
        ValueError
            If the step count is not a non-negative integer, or the names,
            keys or shapes do not fit this optimizer's parameters.
        """
        step_count = state_dict.get("step_count")
        if (not isinstance(step_count, (int, np.integer)) or isinstance(step_count, bool)
                or step_count < 0):
            raise ValueError(f"step_count must be a non-negative integer, got {step_count!r}")
        states = state_dict.get("state")
        if not isinstance(states, dict) or set(states) != set(self.params):
            raise ValueError(f"state must have one entry per parameter "
                             f"{sorted(self.params)}, got "
                             f"{sorted(states) if isinstance(states, dict) else states!r}")
        loaded = {}
        for name, param in self.params.items():
            state = states[name]
            if not isinstance(state, dict) or not set(state) <= set(self._STATE_KEYS):
                raise ValueError(f"the state of {name!r} may hold {self._STATE_KEYS}, got "
                                 f"{sorted(state) if isinstance(state, dict) else state!r}")
            if state and set(state) != set(self._STATE_KEYS):
                raise ValueError(f"the state of {name!r} must hold all of "
                                 f"{self._STATE_KEYS} or nothing, got {sorted(state)}")
            loaded[name] = {}
            for key, value in state.items():
                value = np.asarray(value)
                if value.shape != param.shape or value.dtype.kind != "f":
                    raise ValueError(f"state {name!r}/{key!r} must be a float array of "
                                     f"shape {param.shape}, got {value.dtype} "
                                     f"{value.shape}")
                loaded[name][key] = np.array(value, dtype=param.dtype)
        self.step_count = int(step_count)
        self.state = loaded

    def __repr__(self):
        settings = ", ".join(f"{key}={value!r}" for key, value in self._settings().items())
        return f"{type(self).__name__}({len(self.params)} parameters, {settings})"

    def _settings(self):
        return {"lr": self.lr}


class SGD(_Optimizer):
    """Stochastic gradient descent with momentum, Nesterov momentum and weight decay.

    With ``g = grad + weight_decay * p`` and ``mu = momentum``::

        b = g                          (first step)
        b = mu * b + (1 - dampening) * g
        d = g + mu * b   if nesterov else   b     (d = g without momentum)
        p = p - lr * d

    as ``torch.optim.SGD``.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        The parameters, updated in place by :meth:`step`.
    lr : float, default 0.01
        Learning rate, >= 0.
    momentum : float, default 0.0
        Momentum factor ``mu``, >= 0.
    dampening : float, default 0.0
        Dampening of the momentum, >= 0.
    nesterov : bool, default False
        Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
    weight_decay : float, default 0.0
        L2 penalty added to the gradient, >= 0.
    """

    def __init__(self, params, lr=0.01, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum = _check_number(momentum, "momentum")
        self.dampening = _check_number(dampening, "dampening")
        self.weight_decay = _check_number(weight_decay, "weight_decay")
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening == 0, got "
                             f"momentum={self.momentum}, dampening={self.dampening}")

    _STATE_KEYS = ("momentum_buffer",)

    def _settings(self):
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov, "weight_decay": self.weight_decay}

    def _update(self, param, grad, state):
        if self.weight_decay:
            grad = grad + param.dtype.type(self.weight_decay) * param  # g = grad + wd p
        if self.momentum:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = np.array(grad, dtype=param.dtype)
            else:
                # b = mu b + (1 - dampening) g
                buffer *= param.dtype.type(self.momentum)
                buffer += param.dtype.type(1.0 - self.dampening) * grad
            if self.nesterov:
                grad = grad + param.dtype.type(self.momentum) * buffer  # d = g + mu b
            else:
                grad = buffer
        param -= param.dtype.type(self.lr) * grad                      # p -= lr d


class Adam(_Optimizer):
    """Adam (Kingma and Ba, 2015) with L2 weight decay added to the gradient.

    With ``g = grad + weight_decay * p`` and step count ``t``::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    as ``torch.optim.Adam``.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        The parameters, updated in place by :meth:`step`.
    lr : float, default 0.001
        Learning rate, >= 0.
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator, >= 0.
    weight_decay : float, default 0.0
        L2 penalty added to the gradient, >= 0.
    """

    _decoupled = False

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_check_number(betas[0], "betas[0]", high=1.0),
                      _check_number(betas[1], "betas[1]", high=1.0))
        self.eps = _check_number(eps, "eps")
        self.weight_decay = _check_number(weight_decay, "weight_decay")

    _STATE_KEYS = ("exp_avg", "exp_avg_sq")

    def _settings(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _update(self, param, grad, state):
        beta1, beta2 = self.betas
        real = param.dtype.type
        if self.weight_decay:
            if self._decoupled:
                param *= real(1.0 - self.lr * self.weight_decay)  # p = p (1 - lr wd)
            else:
                grad = grad + real(self.weight_decay) * param      # g = grad + wd p
        if not state:
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
        if "scratch" not in state:
            state["scratch"] = np.empty_like(param)
        m, v, scratch = state["exp_avg"], state["exp_avg_sq"], state["scratch"]
        t = self.step_count
        step_size = self.lr / (1.0 - beta1 ** t)
        bias_correction2_sqrt = math.sqrt(1.0 - beta2 ** t)
        if _fused_update_applies(param, grad, m, v):
            # the lines below in one pass over the elements (the same bits)
            _optim_kernels.adam_update(param.reshape(-1), grad.reshape(-1), m.reshape(-1),
                                       v.reshape(-1), beta1, beta2, step_size,
                                       bias_correction2_sqrt, self.eps)
            return
        # m = beta1 m + (1 - beta1) g
        m *= real(beta1)
        np.multiply(grad, real(1.0 - beta1), out=scratch)
        m += scratch
        # v = beta2 v + (1 - beta2) g^2
        v *= real(beta2)
        np.multiply(grad, grad, out=scratch)
        scratch *= real(1.0 - beta2)
        v += scratch
        # p -= step_size m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
        np.sqrt(v, out=scratch)
        scratch /= real(bias_correction2_sqrt)
        scratch += real(self.eps)
        np.divide(m, scratch, out=scratch)
        scratch *= real(step_size)
        param -= scratch


def _fused_update_applies(param, grad, *state):
    """Whether the one-pass kernel can update `param` (else the NumPy code runs).

    Every array C-contiguous (so that reshape(-1) is a view) and of one float
    dtype, and the gradient apart from what is updated.
    """
    if not USE_FUSED_UPDATES or _optim_kernels is None:
        return False
    dtype = param.dtype
    if dtype != np.float32 and dtype != np.float64:
        return False
    for array in (param, grad) + state:
        if array.dtype != dtype or not array.flags.c_contiguous:
            return False
    return not any(np.may_share_memory(grad, array) for array in (param,) + state)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter, 2019).

    Each step first shrinks the parameters, ``p = p * (1 - lr * weight_decay)``,
    then applies the Adam update of the raw gradient, as ``torch.optim.AdamW``.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        The parameters, updated in place by :meth:`step`.
    lr : float, default 0.001
        Learning rate, >= 0.
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the moment estimates, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator, >= 0.
    weight_decay : float, default 0.01
        Decoupled decay rate, >= 0.
    """

    _decoupled = True

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
