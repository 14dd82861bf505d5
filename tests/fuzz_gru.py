"""Throw malformed arguments and tampered caches at gru_fast's public API.

Every case must either raise TypeError or ValueError with a message, or give
what the NumPy reference gives for the same arguments (non-finite values in
the same places), without changing any input.  Anything else -- another
exception, a mismatch, a changed input -- is counted as a failure and
printed; a crash kills the process.  Run it under AddressSanitizer to also
catch memory errors that do not crash (see README, "Hardening")::

    python tests/fuzz_gru.py --cases 3000 --seed 0

The cache mutations (`MUTATION_FIELDS`, `mutate_cache`) are also the
catalogue that tests/test_hardening_cache.py replays.
"""

import argparse
import copy
import dataclasses
import pickle
import sys
import time
from pathlib import Path

import numpy as np

if __name__ == "__main__":  # run from a checkout: import the package next to tests/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gru_fast  # noqa: E402
from gru_fast import reference  # noqa: E402

CLEAN_ERRORS = (TypeError, ValueError)
RTOL = {np.dtype(np.float32): 2e-4, np.dtype(np.float64): 1e-8}


def pick(rng, options):
    """One of `options` (any objects, unlike Generator.choice), chosen by `rng`."""
    options = list(options)
    return options[int(rng.integers(len(options)))]


class FuzzFailure(AssertionError):
    """A case that neither raised a clean error nor matched the reference."""


# --------------------------------------------------------------------------- problems
def random_problem(rng, dtype=None):
    """Random, valid gru_forward keyword arguments (small sizes, any variant)."""
    dtype = np.dtype(dtype or pick(rng, [np.float32, np.float64]))
    seq_len, batch_size = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    input_size, hidden_size = int(rng.integers(1, 6)), int(rng.integers(1, 40))
    scale = 1.0 / np.sqrt(hidden_size)

    def uniform(*shape):
        return rng.uniform(-2 * scale, 2 * scale, shape).astype(dtype)

    bias = bool(rng.integers(2))
    lengths = None
    if rng.random() < 0.5:
        lengths = rng.integers(0, seq_len + 1, batch_size)
    return {
        "x": rng.standard_normal((seq_len, batch_size, input_size)).astype(dtype),
        "h0": rng.standard_normal((batch_size, hidden_size)).astype(dtype)
        if rng.random() < 0.7 else None,
        "weight_ih": uniform(3 * hidden_size, input_size),
        "weight_hh": uniform(3 * hidden_size, hidden_size),
        "bias_ih": uniform(3 * hidden_size) if bias else None,
        "bias_hh": uniform(3 * hidden_size) if bias else None,
        "reset_after": bool(rng.integers(2)),
        "reverse": bool(rng.integers(2)),
        "lengths": lengths,
    }


def assert_matches(actual, expected, name):
    """Same type, shape, dtype and non-finite places; finite values within RTOL."""
    if expected is None or actual is None:
        if not (expected is None and actual is None):
            raise FuzzFailure(f"{name}: {actual!r} where the reference gives {expected!r}")
        return
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        raise FuzzFailure(f"{name}: {actual.shape} {actual.dtype} where the reference gives "
                          f"{expected.shape} {expected.dtype}")
    finite = np.isfinite(expected)
    if not np.array_equal(np.isfinite(actual), finite):
        raise FuzzFailure(f"{name}: non-finite values in other places than the reference's")
    rtol = RTOL[expected.dtype]
    atol = rtol * max(float(np.max(np.abs(expected[finite]), initial=0.0)), 1e-30)
    if not np.allclose(actual[finite], expected[finite], rtol=rtol, atol=atol):
        worst = float(np.max(np.abs(actual[finite] - expected[finite])))
        raise FuzzFailure(f"{name}: differs from the reference by up to {worst:.3g}")


def assert_grads_match(grads, expected):
    if set(grads) != set(expected):
        raise FuzzFailure(f"gradient keys {sorted(grads)} != {sorted(expected)}")
    for key in expected:
        assert_matches(grads[key], expected[key], "d" + key)


def clean_error(error):
    """True for a TypeError/ValueError that says something."""
    return isinstance(error, CLEAN_ERRORS) and bool(str(error))


# --------------------------------------------------------------------------- caches
CACHE_ARRAYS = ("x_packed", "gates", "h_prev", "weight_ih", "weight_hh")
CACHE_SCALARS = ("hidden_size", "reset_after", "reverse", "has_bias")
PACKING_ARRAYS = ("batch_sizes", "offsets", "out_rows", "order")
PACKING_SCALARS = ("seq_len", "batch_size")
MUTATION_FIELDS = CACHE_ARRAYS + CACHE_SCALARS + ("packing",) + tuple(
    "packing." + name for name in PACKING_ARRAYS + PACKING_SCALARS)
ARRAY_KINDS = ("same", "other_call", "transposed", "other_dtype", "none", "half_rows",
               "every_other_row", "fortran", "copy", "list", "doubled",
               "reshaped_in_place", "dtype_in_place")
SCALAR_KINDS = ("same", "flip", "plus_one", "zero", "negative", "huge", "numpy_scalar",
                "none", "string", "other_call")
PACKING_KINDS = ("same", "other_call", "none", "rebuilt")
METHODS = ("replace", "setattr")


def kinds_for(field):
    """The mutation kinds that apply to `field` (a name of MUTATION_FIELDS)."""
    name = field.split(".")[-1]
    if field == "packing":
        return PACKING_KINDS
    if name in CACHE_SCALARS + PACKING_SCALARS:
        return SCALAR_KINDS
    return ARRAY_KINDS


def _changed_array(value, other, kind):
    if kind == "other_call":
        return other
    if kind == "none":
        return None
    if not isinstance(value, np.ndarray):  # packing.order is None for the identity
        return np.zeros(3, dtype=np.intp) if kind != "same" else value
    if kind == "same":
        return value
    if kind == "transposed":
        return value.T
    if kind == "other_dtype":
        swap = {"f4": np.float64, "f8": np.float32}
        return value.astype(swap.get(value.dtype.str[1:], np.int32))
    if kind == "half_rows":
        return value[: len(value) // 2]
    if kind == "every_other_row":
        return value[::2]
    if kind == "fortran":
        return np.asfortranarray(value)
    if kind == "copy":
        return value.copy()
    if kind == "list":
        return value.tolist()
    if kind == "doubled":
        return np.concatenate([value, value])
    raise ValueError(kind)


def _changed_scalar(value, other, kind):
    return {
        "same": value, "other_call": other, "none": None, "string": str(value),
        "flip": not value if isinstance(value, bool) else -value,
        "plus_one": value + 1, "zero": type(value)(0), "negative": -1 - value,
        "huge": 2**40 + value, "numpy_scalar": np.int64(value) if not isinstance(
            value, bool) else np.bool_(value),
    }[kind]


def _changed_in_place(cache, field, kind):
    """A deep copy of `cache` whose `field` array was retyped or reshaped in place."""
    tampered = copy.deepcopy(cache)
    owner, name = _owner(tampered, field)
    array = getattr(owner, name)
    if not isinstance(array, np.ndarray):  # packing.order of the identity is None
        return tampered
    if kind == "dtype_in_place" and array.size and array.shape[-1] % 2 == 0:
        # The new dtype must tile the last axis: float32 <-> float64, intp -> int32.
        wider = {4: np.float64, 8: np.float32}[array.itemsize]
        array.dtype = wider if array.dtype.kind == "f" else np.int32
    else:
        array.shape = (1, array.size) if array.shape != (1, array.size) else (array.size,)
    return tampered


def _owner(cache, field):
    if field.startswith("packing."):
        return cache.packing, field.split(".", 1)[1]
    return cache, field


def mutate_cache(cache, other, field, kind, method):
    """A cache like `cache` with `field` changed by `kind` through `method`.

    `other` is a cache of another call (other sizes, maybe another dtype);
    `method` is "replace" (dataclasses.replace, which makes a new object) or
    "setattr" (object.__setattr__ on a copy, past the frozen dataclass).
    `cache` itself is never changed.
    """
    if kind.endswith("_in_place"):
        return _changed_in_place(cache, field, kind)
    owner, name = _owner(cache, field)
    other_owner, _ = _owner(other, field)
    value, other_value = getattr(owner, name), getattr(other_owner, name)
    if field == "packing":
        new = {"same": value, "other_call": other_value, "none": None,
               "rebuilt": dataclasses.replace(value)}[kind]
    elif name in CACHE_SCALARS + PACKING_SCALARS:
        new = _changed_scalar(value, other_value, kind)
    else:
        new = _changed_array(value, other_value, kind)
    if method == "replace":
        if owner is cache:
            return dataclasses.replace(cache, **{name: new})
        return dataclasses.replace(cache, packing=dataclasses.replace(owner, **{name: new}))
    tampered = copy.deepcopy(cache) if owner is not cache else copy.copy(cache)
    target = tampered if owner is cache else tampered.packing
    if kind == "same" and owner is not cache:
        new = getattr(target, name)  # the copy's own array, not the original's
    object.__setattr__(target, name, new)
    return tampered


def cache_case(rng, field=None, kind=None, method=None):
    """One tampered-cache case; returns 'refused' or 'matched', raises FuzzFailure."""
    problem = random_problem(rng)
    other = random_problem(rng)
    _, _, cache = gru_fast.gru_forward(**problem, return_cache=True)
    y_ref, _, ref_cache = reference.gru_forward(**problem, return_cache=True)
    _, _, other_cache = gru_fast.gru_forward(**other, return_cache=True)
    field = field or pick(rng, MUTATION_FIELDS)
    kind = kind or pick(rng, kinds_for(field))
    method = method or pick(rng, METHODS)
    tampered = mutate_cache(cache, other_cache, field, kind, method)
    dy = rng.standard_normal(y_ref.shape).astype(y_ref.dtype)
    try:
        grads = gru_fast.gru_backward(tampered, dy)
    except Exception as error:  # noqa: BLE001 (classified below)
        if clean_error(error):
            return "refused"
        raise FuzzFailure(f"cache.{field} {kind} by {method}: {error!r}") from error
    try:
        assert_grads_match(grads, reference.gru_backward(ref_cache, dy))
    except FuzzFailure as failure:
        raise FuzzFailure(f"cache.{field} {kind} by {method}: {failure}") from None
    return "matched"


# --------------------------------------------------------------------------- arguments
def _bad_values(value, rng):
    """Malformed stand-ins for an argument whose good value is `value`."""
    candidates = [None, 0, 1.5, "x", object(), [], [[1.0, 2.0], [3.0]], np.float32(1.0),
                  np.array(1.0), np.zeros((0,)), True]
    if isinstance(value, np.ndarray):
        swapped = np.float64 if value.dtype == np.float32 else np.float32
        candidates += [
            value.astype(swapped), value.astype(np.int32), value.astype(np.float16),
            value.astype(np.complex64), value.astype(bool), value.astype(object),
            value.astype(value.dtype.newbyteorder()), value.tolist(), value[None], value[0],
            value[..., :-1], value[..., ::-1], np.concatenate([value, value]), value.T,
            value[:0], np.full_like(value, np.nan), np.full_like(value, np.inf),
            np.broadcast_to(value, (2,) + value.shape)[0], np.asfortranarray(value),
        ]
    elif isinstance(value, bool):
        candidates += ["False", 0, 1, np.bool_(value), None]
    candidates += [np.array([-1, 2**40]), np.array([np.nan, 1.0]), ["a", "b"]]
    return pick(rng, candidates)


def _snapshot(arguments):
    return {name: copy.deepcopy(value) for name, value in arguments.items()}


def _assert_unchanged(arguments, snapshot, what):
    for name, value in arguments.items():
        if isinstance(value, np.ndarray):
            before = snapshot[name]
            if not np.array_equal(value, before, equal_nan=value.dtype.kind in "fc"):
                raise FuzzFailure(f"{what} changed its argument {name}")


def _run_both(fast, slow, what):
    """Call both; both refuse cleanly, or both run and agree (tuple of arrays/dicts)."""
    outcomes = []
    for function in (fast, slow):
        try:
            with np.errstate(all="ignore"):
                outcomes.append(("ran", function()))
        except Exception as error:  # noqa: BLE001 (classified below)
            if not clean_error(error):
                raise FuzzFailure(f"{what}: {error!r}") from error
            outcomes.append(("refused", error))
    (fast_kind, fast_value), (slow_kind, slow_value) = outcomes
    if fast_kind != slow_kind:
        raise FuzzFailure(f"{what}: gru_fast {fast_kind} ({fast_value!r:.200}) but the "
                          f"reference {slow_kind} ({slow_value!r:.200})")
    if fast_kind == "ran":
        for index, (got, expected) in enumerate(zip(fast_value, slow_value)):
            if isinstance(expected, dict):
                assert_grads_match(got, expected)
            else:
                assert_matches(got, expected, f"{what} result {index}")
    return fast_kind


def forward_case(rng):
    """gru_forward (and FrozenGRU) with one argument malformed, against the reference."""
    problem = random_problem(rng)
    name = pick(rng, list(problem))
    problem[name] = _bad_values(problem[name], rng)
    snapshot = _snapshot(problem)
    outcome = _run_both(lambda: gru_fast.gru_forward(**problem),
                        lambda: reference.gru_forward(**problem), f"gru_forward({name}=bad)")
    _assert_unchanged(problem, snapshot, "gru_forward")
    return outcome


def frozen_case(rng):
    """FrozenGRU with one constructor or call argument malformed, against the reference."""
    problem = random_problem(rng)
    weight_names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "reset_after")
    weights = {name: problem[name] for name in weight_names}
    call = {name: problem[name] for name in ("x", "h0", "lengths", "reverse")}
    bad_weights = rng.random() < 0.4
    target = weights if bad_weights else call
    name = pick(rng, list(target))
    target[name] = _bad_values(target[name], rng)
    snapshot = _snapshot({**weights, **call})

    def fast():
        frozen = gru_fast.FrozenGRU(**weights)
        return frozen(call["x"], call["h0"], lengths=call["lengths"], reverse=call["reverse"])

    outcome = _run_both(fast, lambda: reference.gru_forward(**weights, **call),
                        f"FrozenGRU({name}=bad)")
    _assert_unchanged({**weights, **call}, snapshot, "FrozenGRU")
    return outcome


def step_case(rng):
    """One streaming step (GRU, its frozen copy, or FrozenGRU) with x_t, h or out malformed."""
    problem = random_problem(rng)
    weights = {name: problem[name] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    x_t = problem["x"][0]
    batch_size, hidden_size = x_t.shape[0], weights["weight_hh"].shape[1]
    dtype = x_t.dtype
    h = rng.standard_normal((batch_size, hidden_size)).astype(dtype)
    kind = pick(rng, ["FrozenGRU", "GRU", "FrozenGRULayer"])
    if kind == "FrozenGRU":
        model = gru_fast.FrozenGRU(**weights, reset_after=problem["reset_after"])
    else:
        model = gru_fast.GRU(x_t.shape[1], hidden_size, bias=weights["bias_ih"] is not None,
                             reset_after=problem["reset_after"], dtype=dtype)
        model.load_state_dict({name + "_l0": value for name, value in weights.items()
                               if value is not None})
        model = model.freeze() if kind == "FrozenGRULayer" else model
        h = h[None]  # (num_layers, B, H)
    call = {"x_t": x_t, "h": h, "out": np.empty_like(h) if rng.random() < 0.5 else None}
    name = pick(rng, list(call))
    call[name] = _bad_values(call[name], rng)
    snapshot = _snapshot({key: value for key, value in call.items() if key != "out"})
    try:
        with np.errstate(all="ignore"):
            state = model.step(**call)
    except Exception as error:  # noqa: BLE001
        if clean_error(error):
            return "refused"
        raise FuzzFailure(f"{kind}.step({name}=bad): {error!r}") from error
    _assert_unchanged({key: value for key, value in call.items() if key != "out"}, snapshot,
                      f"{kind}.step")
    # The arguments were accepted: the reference's forward over this one step.
    state_in = None if call["h"] is None else np.asarray(call["h"], dtype=dtype)
    if state_in is not None and kind != "FrozenGRU":
        state_in = state_in[0]
    expected = reference.gru_forward(np.asarray(call["x_t"], dtype=dtype)[None], state_in,
                                     **weights, reset_after=problem["reset_after"])[1]
    assert_matches(state, expected if kind == "FrozenGRU" else expected[None],
                   f"{kind}.step state")
    return "ran"


def backward_case(rng):
    """gru_backward with a malformed dy or dh_n, against the reference."""
    problem = random_problem(rng)
    y, h_n, cache = gru_fast.gru_forward(**problem, return_cache=True)
    _, _, ref_cache = reference.gru_forward(**problem, return_cache=True)
    arguments = {"dy": rng.standard_normal(y.shape).astype(y.dtype), "dh_n": None}
    name = pick(rng, list(arguments))
    arguments[name] = _bad_values(np.ones_like(h_n) if name == "dh_n" else arguments[name], rng)
    snapshot = _snapshot(arguments)
    outcome = _run_both(lambda: (gru_fast.gru_backward(cache, **arguments),),
                        lambda: (reference.gru_backward(ref_cache, **arguments),),
                        f"gru_backward({name}=bad)")
    _assert_unchanged(arguments, snapshot, "gru_backward")
    return outcome


def layer_case(rng):
    """GRU: a malformed constructor argument, call argument or cache."""
    sizes = {"input_size": int(rng.integers(1, 5)), "hidden_size": int(rng.integers(1, 9)),
             "num_layers": int(rng.integers(1, 3))}
    options = {"bias": bool(rng.integers(2)), "batch_first": bool(rng.integers(2)),
               "bidirectional": bool(rng.integers(2)), "reset_after": bool(rng.integers(2)),
               "dtype": pick(rng, [np.float32, np.float64])}
    constructor = {**sizes, **options}
    if rng.random() < 0.3:
        name = pick(rng, list(constructor))
        constructor[name] = pick(rng, 
            [_bad_values(constructor[name], rng), 2**31, -1, 0, 2**62, None])
        try:
            gru_fast.GRU(**constructor)
        except Exception as error:  # noqa: BLE001
            if not clean_error(error):
                raise FuzzFailure(f"GRU({name}={constructor[name]!r}): {error!r}") from error
            return "refused"
        return "ran"
    layer = gru_fast.GRU(**constructor, seed=int(rng.integers(1000)))
    oracle = reference.GRU(**constructor)
    oracle.load_state_dict(layer.state_dict())
    dtype = np.dtype(options["dtype"])
    T, B = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    shape = (B, T, sizes["input_size"]) if options["batch_first"] else (T, B, sizes["input_size"])
    call = {"x": rng.standard_normal(shape).astype(dtype), "h0": None, "lengths": None}
    name = pick(rng, list(call))
    call[name] = _bad_values(call[name], rng)
    snapshot = _snapshot(call)
    outcome = _run_both(lambda: layer(**call), lambda: oracle(**call), f"GRU(...)({name}=bad)")
    _assert_unchanged(call, snapshot, "GRU.__call__")
    if outcome == "ran" and np.asarray(call["x"]).ndim == 3:
        y, _, cache = layer.forward(np.asarray(call["x"], dtype=dtype), return_cache=True)
        strangers = [None, cache.run_caches[0], copy.copy(cache),
                     gru_fast.GRU(**constructor).forward(np.asarray(call["x"], dtype=dtype),
                                                         return_cache=True)[2]]
        stranger = pick(rng, strangers)
        try:
            layer.backward(stranger, np.ones_like(y))
        except Exception as error:  # noqa: BLE001
            if not clean_error(error):
                raise FuzzFailure(f"GRU.backward(stranger cache): {error!r}") from error
    return outcome


def pickle_case(rng):
    """A cache that went through pickle, copy or deepcopy still gives the same gradients."""
    problem = random_problem(rng)
    y, _, cache = gru_fast.gru_forward(**problem, return_cache=True)
    dy = rng.standard_normal(y.shape).astype(y.dtype)
    expected = gru_fast.gru_backward(cache, dy)
    copier = [lambda c: pickle.loads(pickle.dumps(c)), copy.copy, copy.deepcopy]
    again = pick(rng, copier)(cache)
    assert_grads_match(gru_fast.gru_backward(again, dy), expected)
    return "matched"


CASES = {"cache": cache_case, "forward": forward_case, "frozen": frozen_case,
         "step": step_case, "backward": backward_case, "layer": layer_case,
         "pickle": pickle_case}
WEIGHTS = {"cache": 5, "forward": 3, "frozen": 1, "step": 2, "backward": 1, "layer": 2,
           "pickle": 1}


def run(n_cases, seed, verbose=False):
    """Run `n_cases` random cases; return {(family, outcome): count} and the failures."""
    rng = np.random.default_rng(seed)
    names = list(CASES)
    weights = np.array([WEIGHTS[name] for name in names], dtype=float)
    counts, failures = {}, []
    for index in range(n_cases):
        family = names[rng.choice(len(names), p=weights / weights.sum())]
        case_rng = np.random.default_rng([seed, index])
        try:
            outcome = CASES[family](case_rng)
        except FuzzFailure as failure:
            outcome = "FAILED"
            failures.append(f"case {index} ({family}, seed {seed}): {failure}")
            if verbose:
                print(failures[-1], flush=True)
        counts[family, outcome] = counts.get((family, outcome), 0) + 1
    return counts, failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000, help="number of cases")
    parser.add_argument("--seed", type=int, default=0, help="seed of the case generator")
    parser.add_argument("--verbose", action="store_true", help="print failures as they come")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    counts, failures = run(args.cases, args.seed, args.verbose)
    elapsed = time.perf_counter() - start
    for (family, outcome), count in sorted(counts.items()):
        print(f"{family:9s} {outcome:8s} {count}")
    print(f"{args.cases} cases (seed {args.seed}) in {elapsed:.1f} s: "
          f"{len(failures)} failures")
    for failure in failures[:20]:
        print(failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
