"""A GRUCache that was tampered with is refused before the compiled backward runs.

The mutations are those that crashed the process or gave silently wrong
gradients before caches were sealed (issue 11), then random ones from the
catalogue of tests/fuzz_gru.py: every case must raise a clear TypeError or
ValueError, or give the reference's gradients.
"""

import copy
import dataclasses
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gru_fast
from gru_fast import reference

import fuzz_gru

ROOT = Path(__file__).resolve().parent.parent


def forward(input_size, rng, dtype=np.float64, **options):
    """The issue's forward call: T=4, B=2, H=8."""
    return gru_fast.gru_forward(rng.standard_normal((4, 2, input_size)).astype(dtype), None,
                                rng.standard_normal((24, input_size)).astype(dtype),
                                rng.standard_normal((24, 8)).astype(dtype),
                                return_cache=True, **options)


def with_field(cache, name, value, method):
    """`cache` with `name` set to `value`: by dataclasses.replace or object.__setattr__."""
    if method == "replace":
        return dataclasses.replace(cache, **{name: value})
    tampered = copy.copy(cache)
    object.__setattr__(tampered, name, value)
    return tampered


def issue_mutations(cache, big, other):
    """(what, field, value) for every mutation issue 11 lists."""
    packing = cache.packing
    return [
        ("x_packed of a call with I=4096", "x_packed", big.x_packed),
        ("h_prev=None", "h_prev", None),
        ("weight_ih with half its rows", "weight_ih", cache.weight_ih[:12]),
        ("transposed x_packed", "x_packed", cache.x_packed.T),
        ("weight_hh of another call", "weight_hh", other.weight_hh),
        ("changed packing.batch_sizes", "packing",
         dataclasses.replace(packing, batch_sizes=packing.batch_sizes * 3)),
        ("changed packing.out_rows", "packing",
         dataclasses.replace(packing, out_rows=np.arange(packing.n_rows) * 1000)),
        ("flipped reverse", "reverse", not cache.reverse),
        ("flipped reset_after", "reset_after", not cache.reset_after),
        ("flipped has_bias", "has_bias", not cache.has_bias),
    ]


@pytest.mark.parametrize("method", ["replace", "setattr"])
@pytest.mark.parametrize("lengths", [None, [3, 1]])
def test_every_mutation_of_the_issue_is_refused(method, lengths):
    rng = np.random.default_rng(0)
    y, _, cache = forward(1, rng, lengths=lengths)
    _, _, big = forward(4096, rng)
    _, _, other = forward(1, rng)
    expected = gru_fast.gru_backward(cache, np.ones_like(y))
    for what, name, value in issue_mutations(cache, big, other):
        tampered = with_field(cache, name, value, method)
        with pytest.raises((TypeError, ValueError), match="cache") as error:
            gru_fast.gru_backward(tampered, np.ones_like(y))
        assert "gru_forward" in str(error.value) or "cache." in str(error.value), what
    # The original is untouched by all this and still gives its gradients.
    again = gru_fast.gru_backward(cache, np.ones_like(y))
    for name, value in expected.items():
        if value is not None:
            np.testing.assert_array_equal(again[name], value)


def test_a_replaced_field_is_named():
    rng = np.random.default_rng(1)
    y, _, cache = forward(3, rng)
    _, _, other = forward(3, rng)
    tampered = with_field(cache, "weight_hh", other.weight_hh, "setattr")
    with pytest.raises(ValueError, match=r"cache\.weight_hh was changed after gru_forward"):
        gru_fast.gru_backward(tampered, np.ones_like(y))
    inner = copy.deepcopy(cache)
    object.__setattr__(inner.packing, "out_rows", np.zeros(8, dtype=np.intp))
    with pytest.raises(ValueError, match=r"cache\.packing\.out_rows was changed"):
        gru_fast.gru_backward(inner, np.ones_like(y))


def test_a_cache_built_by_hand_is_refused():
    rng = np.random.default_rng(2)
    y, _, cache = forward(2, rng)
    fields = {field.name: getattr(cache, field.name)
              for field in dataclasses.fields(cache) if field.init}
    with pytest.raises(ValueError, match="not made by gru_fast.gru_forward"):
        gru_fast.gru_backward(gru_fast.GRUCache(**fields), np.ones_like(y))


def test_arrays_reshaped_in_place_are_refused():
    """The seal holds the same objects, but their shape or dtype changed in place."""
    rng = np.random.default_rng(3)
    y, _, cache = forward(2, rng, lengths=[4, 2])
    for owner_name, name, change in [
        ("cache", "gates", lambda a: setattr(a, "shape", a.shape[::-1])),
        ("cache", "x_packed", lambda a: setattr(a, "dtype", np.float32)),
        ("packing", "offsets", lambda a: setattr(a, "shape", (1, a.size))),
        ("packing", "out_rows", lambda a: setattr(a, "shape", (2, a.size // 2))),
    ]:
        tampered = copy.deepcopy(cache)
        owner = tampered if owner_name == "cache" else tampered.packing
        change(getattr(owner, name))
        with pytest.raises((TypeError, ValueError), match=rf"cache\.(packing\.)?{name}"):
            gru_fast.gru_backward(tampered, np.ones_like(y))


def test_cache_and_packing_arrays_are_read_only():
    rng = np.random.default_rng(4)
    _, _, cache = forward(2, rng, lengths=[4, 1])
    for name in fuzz_gru.CACHE_ARRAYS:
        assert not getattr(cache, name).flags.writeable, name
    for name in fuzz_gru.PACKING_ARRAYS:
        array = getattr(cache.packing, name)
        with pytest.raises(ValueError, match="WRITEABLE"):
            array.flags.writeable = True  # the indices the core trusts stay as they were


@pytest.mark.parametrize("copier", ["pickle", "copy", "deepcopy"])
def test_copies_and_pickles_keep_the_seal(copier):
    copy_function = {"pickle": lambda c: pickle.loads(pickle.dumps(c)),
                     "copy": copy.copy, "deepcopy": copy.deepcopy}[copier]
    rng = np.random.default_rng(5)
    y, _, cache = forward(3, rng, lengths=[2, 4], reset_after=True)
    dy = rng.standard_normal(y.shape)
    expected = gru_fast.gru_backward(cache, dy)
    copied = copy_function(cache)
    for name in fuzz_gru.PACKING_ARRAYS:
        assert not getattr(copied.packing, name).flags.writeable, name
    fuzz_gru.assert_grads_match(gru_fast.gru_backward(copied, dy), expected)
    # A tampered cache stays refused after a copy or a pickle.
    _, _, other = forward(3, rng)
    tampered = with_field(cache, "weight_hh", other.weight_hh, "setattr")
    with pytest.raises(ValueError, match="cache"):
        gru_fast.gru_backward(copy_function(tampered), dy)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), field=st.sampled_from(fuzz_gru.MUTATION_FIELDS),
       method=st.sampled_from(fuzz_gru.METHODS), data=st.data())
def test_random_cache_mutations_raise_or_match_the_reference(seed, field, method, data):
    kind = data.draw(st.sampled_from(fuzz_gru.kinds_for(field)), label="kind")
    outcome = fuzz_gru.cache_case(np.random.default_rng(seed), field, kind, method)
    if kind.endswith("_in_place"):
        # The method does not matter: the array of a deep copy is reshaped in
        # place, which is seen (the identity packing has no order array).
        assert outcome == "refused" or field == "packing.order"
    elif method == "replace":
        assert outcome == "refused"  # a new cache is never sealed
    elif kind == "same":
        assert outcome == "matched"  # setting a field to what it was changes nothing


def test_layer_cache_is_read_only():
    rng = np.random.default_rng(6)
    layer = gru_fast.GRU(3, 5, num_layers=2, bidirectional=True, seed=0)
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    y, _, cache = layer.forward(x, return_cache=True)
    assert isinstance(cache.run_caches, tuple)
    with pytest.raises(AttributeError, match="read-only"):
        cache.run_caches = cache.run_caches[::-1]
    with pytest.raises(AttributeError, match="read-only"):
        del cache.token
    with pytest.raises(TypeError):
        cache.run_caches[0] = cache.run_caches[1]
    copied = pickle.loads(pickle.dumps(cache))
    with pytest.raises(ValueError, match="another GRU layer"):  # the token is not the layer's
        layer.backward(copied, np.ones_like(y))
    oracle = reference.GRU(3, 5, num_layers=2, bidirectional=True)
    oracle.load_state_dict(layer.state_dict())
    y_ref, _, ref_cache = oracle.forward(x, return_cache=True)
    dx, _, grads = layer.backward(cache, np.ones_like(y))
    dx_ref, _, grads_ref = oracle.backward(ref_cache, np.ones_like(y_ref))
    fuzz_gru.assert_matches(dx, dx_ref, "dx")
    for name in grads_ref:
        fuzz_gru.assert_matches(grads[name], grads_ref[name], name)


def test_fuzz_script_runs_clean():
    """The fuzz script, as a developer runs it, in a child process (a crash fails here)."""
    result = subprocess.run(
        [sys.executable, "-W", "ignore", str(ROOT / "tests" / "fuzz_gru.py"),
         "--cases", "400", "--seed", "11"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "400 cases (seed 11)" in result.stdout and ": 0 failures" in result.stdout
    refused = sum(int(line.split()[-1]) for line in result.stdout.splitlines()
                  if " refused " in f" {line} ")
    assert refused > 100, result.stdout  # the cases are mostly malformed: they must be refused
