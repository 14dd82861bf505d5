"""The lean path of one time step: `FrozenGRU.step`, `FrozenGRULayer.step`, `GRU.step`.

Streaming users call one step per sample, so a step's cost is the call, not
the arithmetic.  Before this path, ``FrozenGRU.step`` for (B, I, H) =
(1, 64, 64), float32, spent its time (AMD EPYC Zen 5, 2 cores, busy machine)
on: validation ~1.7 us, scratch lookups ~7 us (six `_workspace.scratch`
calls), packing bookkeeping and allocations ~1.5 us, the core call ~4.4 us
of which ~4 us acquiring its twenty typed memoryviews, and a parallel region
of two threads for 0.5 us of arithmetic (the notes of issue 16 have all
three shapes).  The lean path instead:

* hands x_t, h and out to `_core.StepKernel` / `_core.step_layers`, which
  hold the packed weights and their scratch and check the three buffers
  themselves (C-contiguous, dtype, shape) for the price of acquiring them;
  anything else falls back to the checked path below, which validates with
  clear errors, normalises and calls the same kernel;
* writes the new state into ``out=`` when given (a loop allocates nothing);
* lets the core's pace measure whether its workers pay for one step, as
  for a sequence (src/_parallel.h), remembered from step to step.

Packed weights are reused across steps: a `FrozenGRU` / `FrozenGRULayer`
owns them; a trainable `GRU` keeps `CheckedSteps`, packed from a byte copy
of its params, and compares the params with that copy (memcmp) on every
step: exact, whatever changed them (optimizers and users write in place),
at the cost of reading the weights once more (a version counter would miss
in-place writes; a checksum costs as much and may collide).  Streaming
without training: ``GRU.freeze()`` skips the comparison.
"""

import operator

import numpy as np

from . import _core, frozen, functional


def max_threads():
    """Most threads one step may use: this thread's `functional.thread_budget`, or 0 (the core's)."""
    limit = getattr(functional._call_context, "limit", None)
    return 0 if limit is None else max(1, limit)


def empty_states(x_t, leading, hidden_size, dtype):
    """An uninitialized (*leading, B, H) array for the new state, B = len(x_t); None if no len."""
    try:
        rows = len(x_t)
    except TypeError:
        return None
    return np.empty((*leading, rows, hidden_size), dtype)


def check_out(out, shape, dtype, x_t, h):
    """Raise unless `out` can take the new state: a writeable C-contiguous array of `shape`.

    It may be `h` itself (the state is read before it is written) but must
    not overlap x_t, nor h otherwise.
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, expected {dtype} (the weights' dtype)")
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape} (the new state), got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError("out must be writeable")
    if not out.flags.aligned:
        raise ValueError("out must hold its values on multiples of their size (aligned); "
                         "pass an array NumPy allocated")
    if np.may_share_memory(out, x_t):
        raise ValueError("out must not share memory with x_t")
    if (h is not None and np.may_share_memory(out, h)
            and not (out.ctypes.data == h.ctypes.data and out.shape == h.shape)):
        raise ValueError("out may be h itself, but must not overlap h otherwise")


class Steps:
    """The step kernels of stacked layers (layer 0 first), run by one `_core.step_layers` call."""

    __slots__ = ("kernels", "hidden_size", "dtype", "_leading")

    def __init__(self, kernels, hidden_size, dtype):
        self.kernels = tuple(kernels)
        self.hidden_size = hidden_size
        self.dtype = dtype
        self._leading = (len(self.kernels),)

    def matches(self, params):
        """True: these kernels do not depend on any params (see `CheckedSteps`)."""
        return True

    def step(self, params, x_t, h, out):
        """The new states (L, B, H) (in `out` if given), or None if an argument does not fit.

        `params` is unused here (see `CheckedSteps`).
        """
        if out is None:
            out = empty_states(x_t, self._leading, self.hidden_size, self.dtype)
        if _core.step_layers(self.kernels, x_t, h, out, max_threads()):
            return out
        return None


class CheckedSteps(Steps):
    """`Steps` for a trainable GRU: used only while its params hold the bytes packed.

    Parameters
    ----------
    params : dict
        The GRU's params, already checked (`GRU._check_params`).
    names : list of str
        Per layer, weight_ih, weight_hh and (with biases) bias_ih, bias_hh.
    num_layers, hidden_size : int
    reset_after : bool
    dtype : numpy.dtype
    """

    __slots__ = ("_current", "_snapshots")

    def __init__(self, params, names, num_layers, hidden_size, reset_after, dtype):
        self._current = operator.itemgetter(*names)  # params -> tuple, one C call
        self._snapshots = tuple(np.array(params[name], order="C", copy=True) for name in names)
        per_layer = len(names) // num_layers
        layers = []
        for layer in range(num_layers):
            weights = list(self._snapshots[layer * per_layer:(layer + 1) * per_layer])
            if per_layer == 2:  # no biases
                weights += [None, None]
            layers.append(frozen.FrozenGRU(*weights, reset_after=reset_after).step_kernel)
        super().__init__(layers, hidden_size, dtype)

    def matches(self, params):
        """Whether `params` still holds exactly the bytes the kernels were packed from."""
        try:
            current = self._current(params)
        except (KeyError, TypeError):
            return False
        return _core.same_bytes(current, self._snapshots)

    def step(self, params, x_t, h, out):
        """As `Steps.step`, or None also when `params` changed since packing."""
        if not self.matches(params):
            return None
        return Steps.step(self, params, x_t, h, out)
