"""The steps' two splits into pieces: over batch rows and over hidden units.

`_core.row_split` decides from the batch and the machine's processors (src/_core.pyx);
`_core._set_row_split` forces either split, and the rows per piece, so that both are
checked here on the same problems: forward and backward against the NumPy reference,
bitwise the same on 1, 2 and 3 threads, with lengths, reverse, both variants and both
dtypes, and with pieces of a few rows so that runs of pieces and stealing happen.
"""

import os

import numpy as np
import pytest

import _helpers
import gru_fast
from gru_fast import _core

# (T, B, I, H): batches of one row piece's tile and of several, partial panels;
# lengths in the second (some rows never run), reverse in the third.
CONFIGS = [(6, 4, 3, 17), (5, 13, 4, 40), (4, 9, 2, 33), (3, 32, 5, 64)]


@pytest.fixture
def set_row_split():
    yield _core._set_row_split
    _core._set_row_split(None)


@pytest.mark.parametrize("split", [(False, 0), (True, 0), (True, 2), (True, 3)],
                         ids=["hidden", "rows", "rows_of_2", "rows_of_3"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("with_dy", [True, False], ids=["dy", "no_dy"])
def test_both_splits_match_the_reference_on_any_thread_count(set_row_split, monkeypatch,
                                                             split, dtype, reset_after,
                                                             with_dy):
    rng = np.random.default_rng(17 + reset_after)
    tol = 1e-3 if dtype == np.float32 else 1e-8
    set_row_split(*split)
    _helpers.assert_configs_on_thread_counts(monkeypatch, rng, CONFIGS, dtype, reset_after,
                                             with_dy, tol, split)


@pytest.mark.parametrize("split", [(False, 0), (True, 0), (True, 2)],
                         ids=["hidden", "rows", "rows_of_2"])
@pytest.mark.parametrize("reset_after", [False, True])
def test_forward_outputs_on_any_thread_count(set_row_split, monkeypatch, split, reset_after):
    """y and h_n (not only the gradients): bitwise on 1-3 threads, and the reference's."""
    from gru_fast import reference

    rng = np.random.default_rng(3)
    set_row_split(*split)
    problem = _helpers.make_problem(rng, 7, 11, 3, 24, dtype=np.float32)
    problem["lengths"] = np.array([7, 7, 6, 5, 5, 3, 2, 2, 1, 0, 7])
    _core._force_threads(True)
    try:
        outputs = []
        for threads in (1, 2, 3):
            monkeypatch.setattr(gru_fast.functional, "core_threads", lambda: threads)
            outputs.append(gru_fast.gru_forward(**problem, reset_after=reset_after))
    finally:
        _core._force_threads(None)
    for y, h_n in outputs[1:]:
        np.testing.assert_array_equal(y, outputs[0][0])
        np.testing.assert_array_equal(h_n, outputs[0][1])
    y_ref, h_ref = reference.gru_forward(**problem, reset_after=reset_after)
    _helpers.assert_close(outputs[0][0], y_ref.astype(np.float32))
    _helpers.assert_close(outputs[0][1], h_ref.astype(np.float32))


def test_streaming_steps_split_too(set_row_split):
    """FrozenGRU.step (the step kernel) with a batch of several row pieces."""
    from gru_fast import reference

    rng = np.random.default_rng(8)
    weights = _helpers.make_weights(rng, 5, 20, np.float64)
    x = rng.standard_normal((4, 9, 5))
    y_ref, _ = reference.gru_forward(x, None, **weights, reset_after=False)
    for split in ((True, 2), (False, 0)):
        set_row_split(*split)
        frozen = gru_fast.FrozenGRU(**weights, reset_after=False)
        h = None
        for t in range(x.shape[0]):
            h = frozen.step(x[t], h)
            _helpers.assert_close(h, y_ref[t], f"{split} step {t}")


def test_the_rule_follows_the_batch_lengths_size_and_processors():
    processors = os.cpu_count() or 1
    budget = _core.level2_budget()
    for batch_size in range(1, 40):
        for hidden_size in (16, 128, 200, 1024):
            for itemsize in (4, 8):
                for full in (True, False):
                    for backward in (False, True):
                        budgets = 8 if full and not backward else 2
                        rows = _core.row_split(batch_size, hidden_size, itemsize, full, backward)
                        min_rows = 2 if backward else 3  # _row_piece_min
                        assert rows == (min(processors, batch_size // min_rows) >= 2
                                        and 3 * hidden_size ** 2 * itemsize <= budgets * budget)
                    # backward with row pieces sums dW_hh over all rows
                    if _core.row_split(batch_size, hidden_size, itemsize, full, True):
                        # rows per step of 3 steps: all of them, or fewer at the last
                        step_rows = np.array([batch_size, batch_size,
                                              batch_size - (not full)], dtype=np.intp)
                        assert _core.backward_hh_over_rows(step_rows, batch_size, hidden_size,
                                                           itemsize)
