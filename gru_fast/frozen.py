"""Inference with weights packed once: `FrozenGRU` and `FrozenGRULayer`.

`gru_forward` packs the weights into the kernel's panels on every call: it
cannot know whether the caller changed them in place since the last one.
That packing, with the checks of the weights and the folding of the biases,
is a fixed cost per call: small against a long batch, but not against a
short stream or very large weights (bench/README.md, "Measurements behind
the code").  An inference session whose weights do not change can pay it
once: `FrozenGRU` packs a snapshot of one layer-direction's weights when it
is made, as ONNX Runtime does when it creates a session; `FrozenGRULayer`
(what `gru_fast.GRU.freeze` returns) is a whole `GRU` made of them.
"""

import numpy as np

from . import _core, _stepping
from ._fastpath import plain_lengths, plain_sequence_input
from ._workspace import aligned_empty
from .functional import fold_biases, input_for_run, run_forward
from .layer import GRU
from ._validation import (check_flag, check_input_features, check_state_and_lengths,
                          realigned, validate_weights)

__all__ = ["FrozenGRU", "FrozenGRULayer"]


def _read_only_copy(array):
    if array is None:
        return None
    copy = np.array(array, copy=True)
    copy.flags.writeable = False
    return copy


class FrozenGRU:
    """One GRU layer in one direction, weights packed once, for inference.

    The weights are copied (packed) when the object is made: changing the
    arrays passed in afterwards does not change its results.  Calls give
    the same results as `gru_fast.gru_forward` with the same weights, and
    are safe from several threads at once.

    Parameters
    ----------
    weight_ih : ndarray, shape (3H, I)
        Input weights, gate rows ordered reset, update, candidate (r, z, n).
    weight_hh : ndarray, shape (3H, H)
        Recurrent weights, same gate order; its dtype (float32 or float64)
        is the dtype of every later call.
    bias_ih, bias_hh : ndarray, shape (3H,), or None
        Input and recurrent biases; both or neither.
    reset_after : bool, default False
        The candidate-state variant, as in `gru_fast.gru_forward`.

    Raises
    ------
    TypeError, ValueError
        For the weights, as `gru_fast.gru_forward` does.

    Examples
    --------
    >>> import numpy as np, gru_fast
    >>> rng = np.random.default_rng(0)
    >>> w_ih = rng.standard_normal((3 * 16, 4)).astype(np.float32)
    >>> w_hh = rng.standard_normal((3 * 16, 16)).astype(np.float32)
    >>> frozen = gru_fast.FrozenGRU(w_ih, w_hh, reset_after=True)
    >>> x = rng.standard_normal((10, 2, 4)).astype(np.float32)
    >>> y, h_n = frozen(x)
    >>> y.shape, h_n.shape
    ((10, 2, 16), (2, 16))
    """

    def __init__(self, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *,
                 reset_after=False):
        self._reset_after = check_flag(reset_after, "reset_after")
        weight_ih, weight_hh, bias_ih, bias_hh, self._hidden_size, self._input_size = (
            validate_weights(weight_ih, weight_hh, bias_ih, bias_hh))
        self._dtype = weight_hh.dtype
        self._has_bias = bias_ih is not None
        bias_gates, bias_hn = fold_biases(bias_ih, bias_hh, self._hidden_size,
                                          self._reset_after, self._dtype)
        self._bias_gates = np.array(bias_gates, copy=True)  # never a view of the caller's
        self._bias_hn = np.array(bias_hn, copy=True)
        self._pack(weight_ih, weight_hh)
        # The biases as given (folded above, they cannot be told apart), for weights().
        self._biases = {"bias_ih": _read_only_copy(bias_ih),
                        "bias_hh": _read_only_copy(bias_hh)}

    def _make_step_kernel(self):
        self._step_kernel = _core.StepKernel(self._packed_ih, self._packed_hh, self._bias_gates,
                                             self._bias_hn, self._input_size,
                                             self._hidden_size, self._reset_after)

    @property
    def step_kernel(self):
        """The `gru_fast._core.StepKernel` that runs `step` (for stacks of layers)."""
        return self._step_kernel

    @property
    def input_size(self):
        """I, the features of each input step."""
        return self._input_size

    @property
    def hidden_size(self):
        """H, the size of the state."""
        return self._hidden_size

    @property
    def dtype(self):
        """The dtype of the weights, and of every array a call takes and returns."""
        return self._dtype

    @property
    def reset_after(self):
        """The candidate-state variant (see `gru_fast.gru_forward`)."""
        return self._reset_after

    def weights(self):
        """The weights this layer was made from, as new arrays.

        Returns
        -------
        dict
            ``weight_ih`` (3H, I) and ``weight_hh`` (3H, H) unpacked from the panels,
            ``bias_ih`` and ``bias_hh`` (3H,) as given (None when made without).
        """
        weight_ih, weight_hh = self._unpacked_weights()
        return {"weight_ih": weight_ih, "weight_hh": weight_hh,
                **{name: None if value is None else value.copy()
                   for name, value in self._biases.items()}}

    @property
    def nbytes(self):
        """Bytes held: the packed weights (padded to panels) and the folded biases."""
        arrays = (self._packed_ih, self._packed_hh, self._bias_gates, self._bias_hn)
        return sum(array.nbytes for array in arrays)

    def __getstate__(self):
        """Pickle the weights unpacked: the panel layout depends on the CPU level.

        The packed panels are PANEL_WIDTH columns wide, and that width is the
        loading machine's (32 with AVX-512, 16 below; see gru_fast._core), so
        a pickle holds the weights themselves (and, for reference, the panel
        width and CPU level of the maker), and unpickling packs them again
        for the core of the process that loads it.
        """
        state = {key: value for key, value in self.__dict__.items()
                 if key not in ("_packed_ih", "_packed_hh", "_step_kernel")}
        state["_weight_ih"], state["_weight_hh"] = self._unpacked_weights()
        return state

    def __setstate__(self, state):
        """Unpickle, packing the weights for this machine's core (on 64-byte lines)."""
        if "_weight_ih" not in state:
            raise ValueError("this FrozenGRU was pickled by an earlier gru_fast, whose "
                             "pickles hold packed panels of an unrecorded width; "
                             "make it again from the weights (FrozenGRU(...) or GRU.freeze())")
        state = dict(state)
        weight_ih = np.ascontiguousarray(state.pop("_weight_ih"))
        weight_hh = np.ascontiguousarray(state.pop("_weight_hh"))
        self.__dict__.update(state)
        self._bias_gates = realigned(self._bias_gates)  # the core refuses unaligned arrays
        self._bias_hn = realigned(self._bias_hn)
        expected = ((3 * self._hidden_size, self._input_size),
                    (3 * self._hidden_size, self._hidden_size))
        if ((weight_ih.shape, weight_hh.shape) != expected
                or weight_ih.dtype != self._dtype or weight_hh.dtype != self._dtype):
            raise ValueError(f"corrupt FrozenGRU pickle: weights {weight_ih.shape}, "
                             f"{weight_hh.shape} ({weight_ih.dtype}) for sizes {expected} "
                             f"({self._dtype})")
        self._pack(weight_ih, weight_hh)

    def _pack(self, weight_ih, weight_hh):
        """Pack validated weights into panels for this process's core, and record the layout."""
        padded = _core.padded_to_panels(self._hidden_size)
        self._packed_ih = aligned_empty(3 * padded * self._input_size, self._dtype)
        self._packed_hh = aligned_empty(3 * padded * self._hidden_size, self._dtype)
        _core.pack_forward_weights(weight_ih, weight_hh, self._packed_ih, self._packed_hh)
        self._panel_width = _core.PANEL_WIDTH
        self._cpu_level = _core.CPU_LEVEL
        self._make_step_kernel()

    def _unpacked_weights(self):
        """(weight_ih (3H, I), weight_hh (3H, H)): new arrays, the inverse of `_pack`."""
        return (_unpack_panels(self._packed_ih, self._hidden_size, self._input_size,
                               self._panel_width),
                _unpack_panels(self._packed_hh, self._hidden_size, self._hidden_size,
                               self._panel_width))

    def __repr__(self):
        return (f"FrozenGRU(input_size={self._input_size}, hidden_size={self._hidden_size}, "
                f"bias={self._has_bias}, reset_after={self._reset_after}, "
                f"dtype={self._dtype.name})")

    def _check_x(self, x, name, ndim, layout, c_contiguous=True):
        return check_input_features(x, name, ndim, layout, self._input_size, self._dtype,
                                    c_contiguous)

    def forward(self, x, h0=None, *, lengths=None, reverse=False, return_sequences=True):
        """Run the layer over a whole sequence.

        Parameters
        ----------
        x : ndarray, shape (T, B, I)
            Time-major input of the weights' dtype.
        h0 : ndarray, shape (B, H), or None
            Initial state; None means zeros.
        lengths : array_like of int, shape (B,), optional
            Valid steps per row, as in `gru_fast.gru_forward`.
        reverse : bool, default False
            Run each row from its last valid step down to step 0.
        return_sequences : bool, default True
            False: return only the final state; y is None and never
            allocated, so memory beyond the input stays O(B*H).

        Returns
        -------
        y : ndarray, shape (T, B, H), or None
            The state after every step, zero at padded positions; None when
            ``return_sequences`` is false.
        h_n : ndarray, shape (B, H)
            The final state of every row.

        Raises
        ------
        TypeError
            For another dtype than the weights', or a non-boolean `reverse`.
        ValueError
            For wrong ranks or shapes, or lengths as `gru_fast.gru_forward` rejects them.
        """
        if (type(reverse) is bool and type(return_sequences) is bool
                and plain_sequence_input(x, h0, self._input_size, self._hidden_size, 0,
                                         False, self._dtype.num)):
            # plain arrays, checked in C (gru_fast._fastpath): x is read as it is
            checked = plain_lengths(lengths, x.shape[1], x.shape[0])
            if checked is not False:
                return self._forward_checked(x, h0, checked, reverse, return_sequences)
        reverse = check_flag(reverse, "reverse")
        return_sequences = check_flag(return_sequences, "return_sequences")
        x = self._check_x(x, "x", 3, "(T, B, I)", c_contiguous=False)
        h0, lengths = check_state_and_lengths(h0, lengths, x.shape, self._hidden_size,
                                              self._dtype)
        x = input_for_run(x, self._hidden_size)
        return self._forward_checked(x, h0, lengths, reverse, return_sequences)

    __call__ = forward

    def _forward_checked(self, x, h0, lengths, reverse, return_sequences):
        """`forward` on arguments already checked (by it, or by a FrozenGRULayer's forward,
        whose checks cover these: ~7 us a call saved, 5% of a stream call)."""
        y, h_n, _ = run_forward(x, h0, lengths, self._bias_gates, self._bias_hn,
                                self._hidden_size, self._reset_after, reverse, False,
                                packed=(self._packed_ih, self._packed_hh),
                                return_sequences=return_sequences)
        return y, h_n

    def step(self, x_t, h=None, *, out=None):
        """Advance the state by one time step (streaming inference).

        The lean path: arrays that are already right (C-contiguous, the
        weights' dtype, the right shapes) go straight to the compiled step;
        anything else is checked, and converted where `forward` would.  The
        result is bitwise that of `forward` (and `gru_fast.gru_forward`) on
        the same step.

        Parameters
        ----------
        x_t : ndarray, shape (B, I)
            The input at this step.
        h : ndarray, shape (B, H), or None
            The state after the previous step; None means zeros.
        out : ndarray, shape (B, H), optional
            Where to write the new state: C-contiguous, the weights' dtype.
            It may be `h` itself (``h = frozen.step(x_t, h, out=h)``), so a
            streaming loop allocates nothing.

        Returns
        -------
        ndarray, shape (B, H)
            The new state: `out` when given, else a new array (`h` is not
            modified unless it is `out`).

        Raises
        ------
        TypeError, ValueError
            As `forward` does, for x_t and h; for an `out` of another dtype,
            shape or layout, or one that overlaps x_t.
        """
        new_state = out
        if new_state is None:
            new_state = _stepping.empty_states(x_t, (), self._hidden_size, self._dtype)
        if self._step_kernel.step(x_t, h, new_state, _stepping.max_threads()):
            return new_state
        return self._checked_step(x_t, h, out)

    def _checked_step(self, x_t, h, out):
        """`step` for arguments the lean path refused: validate, normalise, run."""
        x_t = self._check_x(x_t, "x_t", 2, "(B, I)")
        h, _ = check_state_and_lengths(h, None, (1,) + x_t.shape, self._hidden_size,
                                       self._dtype, "h")
        if h is not None:
            h = np.ascontiguousarray(h)
        shape = (x_t.shape[0], self._hidden_size)
        if out is None:
            out = np.empty(shape, self._dtype)
        else:
            _stepping.check_out(out, shape, self._dtype, x_t, h)
        if shape[0] == 0:
            return out
        if not self._step_kernel.step(x_t, h, out, _stepping.max_threads()):
            raise RuntimeError("gru_fast internal error: the step kernel refused checked arguments")
        return out



class FrozenGRULayer(GRU):
    """A `GRU` for inference whose weights were packed once; made by :meth:`GRU.freeze`.

    Same configuration, validation and results as the layer it was made from;
    each layer and direction runs a `FrozenGRU`.  ``params`` is a read-only
    snapshot; :meth:`backward`, ``forward(..., return_cache=True)`` and
    :meth:`load_state_dict` raise (freeze the trained layer again instead).

    Parameters
    ----------
    input_size, hidden_size, num_layers, bias, batch_first, bidirectional, reset_after, dtype
        The configuration, as for `gru_fast.GRU`.
    params : mapping of str to array_like
        The parameters, named and shaped as `gru_fast.GRU.params` (checked as
        `gru_fast.GRU.load_state_dict` checks them); copied, then packed.

    Raises
    ------
    TypeError, ValueError
        For a configuration `gru_fast.GRU` refuses, or parameters its
        ``load_state_dict`` refuses.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True,
                 batch_first=False, bidirectional=False, reset_after=False,
                 dtype=np.float32, params):
        self._configure(input_size, hidden_size, num_layers, bias, batch_first,
                        bidirectional, reset_after, dtype)
        # Checked and copied as GRU.load_state_dict does (names, shapes, floating
        # dtypes cast to the layer's), then made read-only.
        GRU.load_state_dict(self, params)
        for value in self.params.values():
            value.flags.writeable = False
        self._frozen = {}
        for layer_index in range(self._num_layers):
            for direction in range(self.num_directions):
                weights = [self.params[n] for n in self._names(layer_index, direction)]
                self._frozen[layer_index, direction] = FrozenGRU(
                    *weights, reset_after=self._reset_after)
        self._make_frozen_steps()

    def _make_frozen_steps(self):
        """The lean path of `step`: this layer's own kernels, never stale."""
        if self._bidirectional:
            return  # step() refuses (see GRU.step)
        from ._stepping import Steps
        self._step_cache = Steps([self._frozen[layer, 0].step_kernel
                                  for layer in range(self._num_layers)],
                                 self._hidden_size, self._dtype)

    def _make_step_cache(self):
        return self._step_cache

    def __setstate__(self, state):
        """Unpickle, keeping the parameters read-only (NumPy's pickles drop the flag)."""
        GRU.__setstate__(self, state)
        for value in self.params.values():
            value.flags.writeable = False
        self._make_frozen_steps()

    def _run_direction(self, layer, direction, layer_input, h0, lengths, return_cache,
                       return_sequences=True, input_is_ours=False, borrow_params=False):
        if return_cache:
            raise ValueError("a frozen GRU is for inference: forward() keeps no cache; "
                             "train the GRU it was made from and freeze it again")
        # checked by forward (GRU.forward): layer_input of the dtype (C-contiguous, or
        # any strides for a batch run in blocks: functional.input_for_run), with
        # this direction's input size; h0 a (B, H) slice of the checked states; lengths int64
        return self._frozen[layer, direction]._forward_checked(
            layer_input, h0, lengths, direction == 1, return_sequences)

    def backward(self, cache, dy, dh_n=None):
        """Not available: a frozen GRU runs inference only.

        Raises
        ------
        TypeError
            Always.
        """
        raise TypeError("a frozen GRU is for inference and has no backward(); "
                        "train the GRU it was made from and freeze it again")

    def load_state_dict(self, state_dict):
        """Not available: the packed weights are fixed.

        Raises
        ------
        TypeError
            Always; load the parameters into a `GRU` and freeze that.
        """
        raise TypeError("a frozen GRU's weights are fixed: load the state dict into a "
                        "gru_fast.GRU and call its freeze()")

def _unpack_panels(packed, hidden_size, width, panel_width):
    """W (3H, K) from the panels `_core.pack_forward_weights` made of it (K = I or H).

    Gate g's panels start at packed[g * Hp * K] (Hp = H padded to whole
    panels); panel q is the K x panel_width block W[gH + q*pw : gH + (q+1)*pw].T,
    zero past H.
    """
    padded = -(-hidden_size // panel_width) * panel_width
    panels = packed.reshape(3, padded // panel_width, width, panel_width)  # (gate, q, k, column)
    rows = panels.transpose(0, 1, 3, 2).reshape(3, padded, width)  # (gate, unit, k)
    return np.ascontiguousarray(rows[:, :hidden_size].reshape(3 * hidden_size, width))
