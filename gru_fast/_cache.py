"""`GRUCache`, what backward needs from forward, and its seal.

The compiled backward trusts a cache completely: it reads x, the gates and
the entering states through the packing's indices, without checks.  A cache
whose arrays were swapped for others (``dataclasses.replace``,
``object.__setattr__``) or reshaped in place would make it read and write
out of bounds.  So `gru_forward` seals every cache it makes: the seal keeps
the very objects of every field (of the cache and of its packing) and the
shape, strides and dtype of every array.  `check_cache` compares them, a few
microseconds and no pass over the data; a cache built any other way is
refused.  The packing's index arrays cannot be written at all (see
`gru_fast._packing`); the values of the other arrays can only change by
turning their WRITEABLE flag back on, which gives other gradients but never
reads or writes out of bounds.
"""

import operator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ._packing import Packing
from ._validation import realigned

__all__ = ["GRUCache", "check_cache", "sealed_cache"]


@dataclass(frozen=True)
class GRUCache:
    """What `gru_backward` needs from a `gru_forward(..., return_cache=True)` call.

    Every array is owned by the cache (never shared with the caller) and
    read-only, so changing inputs or outputs after the forward pass cannot
    corrupt it.  Size in bytes, with N = number of valid (step, row) pairs
    (T*B without lengths) and itemsize 4 or 8:
    ``itemsize * (N*(I + 5H) + 3H*(I + H))`` (packed inputs, the 4H gate
    block and the H entering states per row, plus copies of the weights).
    See `nbytes`.

    A cache is sealed by the `gru_forward` that made it: one built by hand,
    by ``dataclasses.replace``, or changed with ``object.__setattr__`` or by
    reshaping an array in place, is refused by `gru_backward`.  Copies and
    pickles keep the seal.
    """

    x_packed: np.ndarray  # (N, I)
    gates: np.ndarray  # (N, 4H): r, z, n, and hn (reset_after) or r*h_prev
    h_prev: np.ndarray  # (N, H) state entering each step
    weight_ih: np.ndarray  # (3H, I)
    weight_hh: np.ndarray  # (3H, H)
    packing: Packing
    hidden_size: int
    reset_after: bool
    reverse: bool
    has_bias: bool
    # Set by `sealed_cache` only.  init=False: dataclasses.replace leaves it None.
    _seal: "_Seal" = field(default=None, init=False, repr=False, compare=False)

    @property
    def nbytes(self):
        """Bytes held by the cache's arrays."""
        arrays = (self.x_packed, self.gates, self.h_prev, self.weight_ih, self.weight_hh)
        return sum(array.nbytes for array in arrays)

    @property
    def dtype(self):
        """The dtype of the forward call."""
        return self.gates.dtype

    def __reduce__(self):
        """Pickle and copy the fields; the copy is sealed only if this cache is intact."""
        fields = {name: getattr(self, name) for name in _CACHE_FIELDS}
        return (_restore_cache, (fields, _first_change(self) is None))


_CACHE_ARRAYS = ("x_packed", "gates", "h_prev", "weight_ih", "weight_hh")
_CACHE_FIELDS = _CACHE_ARRAYS + ("packing", "hidden_size", "reset_after", "reverse",
                                 "has_bias")
_PACKING_FIELDS = ("seq_len", "batch_size", "batch_sizes", "offsets", "out_rows", "order")
_SEALED_NAMES = _CACHE_FIELDS + tuple("packing." + name for name in _PACKING_FIELDS)
_sealed_values = operator.attrgetter(*_SEALED_NAMES)  # one C call, a tuple


class _Seal(NamedTuple):
    """What gru_forward put in a cache: the objects, and each array's layout."""

    values: tuple  # _sealed_values(cache)
    layouts: tuple  # _layouts(values)


# The arrays among the sealed values whose layout the core depends on (the
# packing's order is only ever used by NumPy indexing, and may be None).
_pick_arrays = operator.itemgetter(*(_SEALED_NAMES.index(name) for name in _CACHE_ARRAYS + (
    "packing.batch_sizes", "packing.offsets", "packing.out_rows")))
_layout = operator.attrgetter("shape", "strides", "dtype")


def _layouts(values):
    """(shape, strides, dtype) of every array the core reads, in `_pick_arrays` order."""
    return tuple(map(_layout, _pick_arrays(values)))


def sealed_cache(**fields):
    """A GRUCache of `fields`, its arrays made read-only, sealed as gru_forward's own."""
    for name in _CACHE_ARRAYS:
        fields[name].flags.writeable = False
    cache = GRUCache(**fields)
    values = _sealed_values(cache)
    object.__setattr__(cache, "_seal", _Seal(values, _layouts(values)))
    return cache


def _restore_cache(fields, intact):
    """Unpickle (and copy) a GRUCache: sealed again only if the original was intact."""
    for name in _CACHE_ARRAYS:
        fields[name] = realigned(fields[name])  # the core refuses unaligned arrays
    return sealed_cache(**fields) if intact else GRUCache(**fields)


def _first_change(cache):
    """How `cache` differs from its seal, as (what, now, before); None if it does not.

    what is "missing" (no seal), "replaced" or "reshaped"; now and before
    name the field and describe it.
    """
    seal = cache._seal
    if type(seal) is not _Seal:
        return "missing", None, None
    try:
        values = _sealed_values(cache)
    except AttributeError:  # the packing was replaced by something else
        values = None
    if values is None or not all(map(operator.is_, values, seal.values)):
        for index, name in enumerate(_SEALED_NAMES):
            now = values[index] if values is not None else getattr(cache, name, None)
            if now is not seal.values[index]:
                return "replaced", (name, _describe(now)), _describe(seal.values[index])
        return "replaced", ("packing", _describe(cache.packing)), "the packing"
    layouts = _layouts(values)
    if layouts != seal.layouts:
        names = _pick_arrays(_SEALED_NAMES)
        for name, now, before in zip(names, layouts, seal.layouts):
            if now != before:
                return "reshaped", (name, _describe_layout(now)), _describe_layout(before)
    return None


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array {value.shape} {value.dtype}"
    if isinstance(value, Packing):
        return "another Packing"
    return repr(value)


def _describe_layout(layout):
    shape, strides, dtype = layout
    return f"shape {shape}, strides {strides}, dtype {dtype}"


def check_cache(cache):
    """Raise unless `cache` is a GRUCache that gru_forward made, unchanged since.

    Raises
    ------
    TypeError
        If `cache` is not a GRUCache.
    ValueError
        If the cache was not made by gru_forward, or a field was replaced or
        an array reshaped or retyped in place since.
    """
    if not isinstance(cache, GRUCache):
        raise TypeError(
            "cache must be the GRUCache returned by gru_fast.gru_forward(..., "
            f"return_cache=True), got {type(cache).__name__}"
        )
    change = _first_change(cache)
    if change is None:
        return
    what, now, before = change
    if what == "missing":
        raise ValueError(
            "cache was not made by gru_fast.gru_forward (a GRUCache built by hand or by "
            "dataclasses.replace is refused: backward trusts its arrays); pass the cache "
            "that gru_forward(..., return_cache=True) returned"
        )
    name, description = now
    raise ValueError(
        f"cache.{name} was {'changed' if what == 'replaced' else 'reshaped in place'} "
        f"after gru_forward made the cache (now {description}, was {before}); pass the "
        "cache that gru_forward(..., return_cache=True) returned, unmodified"
    )
