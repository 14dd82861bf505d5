"""Products with A packed into the kernel's row tiles: same bits, any thread count.

Forward (functional.INPUT_TILES): a chunk of several steps can have its x rows packed into row tiles before its
projection (`_core.forward_sequence(..., input_tiles=...)`), so that each
register tile of the kernel reads one stream of x instead of one per row. The
tiles hold the same values and the kernel sums them in the same order, so the
results must be those without tiles bit for bit, on any thread count, and the
reference's within rounding. Chunks are made short here (PROJECTION_CHUNK_ROWS)
so that small problems have several chunks, rows past the last whole tile, and
chunks with fewer rows than one tile.

Backward (functional.WEIGHT_TILES): dW_ih = d_gi^T x on the packed kernel can
pack d_gi^T's row tiles a block at a time into each input piece's buffer
(`_core.backward_sequence(..., weight_tiles=...)`); forced on here, its
gradients must be those without it bit for bit, and the reference's.
"""

import numpy as np
import pytest

import _helpers
import gru_fast
from gru_fast import _core, functional, reference

# (T, B, I, H): several steps per chunk; one row per step (no whole tile in
# a short chunk); an input wider than a k block of the kernel; a chunk that
# ends inside a step's rows when lengths differ.
CONFIGS = [(9, 5, 7, 33), (12, 1, 20, 40), (7, 13, 300, 70), (10, 11, 40, 17)]


@pytest.fixture
def short_chunks(monkeypatch):
    """Chunks of at most 40 rows: several per problem, of several steps each."""
    monkeypatch.setattr(functional, "PROJECTION_CHUNK_ROWS", 40)


def _forward(problem, reset_after, reverse, tiles, threads, monkeypatch):
    monkeypatch.setattr(functional, "INPUT_TILES", tiles)
    monkeypatch.setattr(functional, "core_threads", lambda: threads)
    y, h_n, cache = gru_fast.gru_forward(**problem, reset_after=reset_after, reverse=reverse,
                                         return_cache=True)
    return y, h_n, cache.gates


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
def test_tiles_give_the_same_bits_on_any_thread_count(short_chunks, monkeypatch, dtype,
                                                      reset_after):
    rng = np.random.default_rng(21 + reset_after)
    tol = 2e-4 if dtype == np.float32 else 1e-9
    _core._force_threads(True)  # pieces really run on the workers
    try:
        for index, shape in enumerate(CONFIGS):
            problem = _helpers.make_problem(rng, *shape, dtype=dtype)
            if index % 2 == 1:
                problem["lengths"] = rng.integers(0, shape[0] + 1, shape[1])
            reverse = index == 2
            runs = [_forward(problem, reset_after, reverse, tiles, threads, monkeypatch)
                    for tiles in (False, True) for threads in (1, 2, 3)]
            _helpers.assert_forward_runs_match(runs, problem, reset_after, reverse, tol, shape)
    finally:
        _core._force_threads(None)


def _tiles_passed(monkeypatch, problem):
    """The input_tiles argument of each core call of one forward of `problem`."""
    seen = []
    forward_sequence = _core.forward_sequence

    def recording(*args, **kwargs):
        seen.append(args[24] if len(args) > 24 else kwargs.get("input_tiles"))
        return forward_sequence(*args, **kwargs)

    monkeypatch.setattr(_core, "forward_sequence", recording)
    gru_fast.gru_forward(**problem, reset_after=True, return_cache=True)
    monkeypatch.setattr(_core, "forward_sequence", forward_sequence)
    return seen


def test_the_rule_packs_only_chunks_larger_than_the_level2_budget(monkeypatch):
    budget = _core.level2_budget()
    wide_input = budget // (256 * 4) + 1  # a 256-row float32 chunk just over the budget
    assert functional._input_tiles_pay(256, 16, wide_input, np.float32)
    assert not functional._input_tiles_pay(256, 16, wide_input // 2, np.float32)
    assert functional._input_tiles_pay(256, 16, wide_input // 2 + 1, np.float64)
    # one step per chunk: projected inside the step, never tiled
    assert not functional._input_tiles_pay(16, 16, 10 * wide_input, np.float32)
    monkeypatch.setattr(functional, "INPUT_TILES", True)
    assert functional._input_tiles_pay(256, 16, 1, np.float32)
    assert not functional._input_tiles_pay(16, 16, 1, np.float32)
    monkeypatch.setattr(functional, "INPUT_TILES", False)
    assert not functional._input_tiles_pay(256, 16, 10 * wide_input, np.float32)


def test_the_rule_reaches_the_core(monkeypatch):
    rng = np.random.default_rng(5)
    small = _helpers.make_problem(rng, 6, 4, 8, 16, dtype=np.float32)
    assert _tiles_passed(monkeypatch, small) == [None]
    monkeypatch.setattr(functional, "INPUT_TILES", True)
    (tiles,) = _tiles_passed(monkeypatch, small)
    assert tiles.shape == (24, 8) and tiles.dtype == np.float32  # all 6 steps in one chunk


def test_core_refuses_input_tiles_of_the_wrong_shape(monkeypatch):
    rng = np.random.default_rng(6)
    problem = _helpers.make_problem(rng, 6, 4, 8, 16, dtype=np.float32)
    monkeypatch.setattr(functional, "INPUT_TILES", True)
    forward_sequence = _core.forward_sequence

    def too_narrow(*args, **kwargs):
        args = list(args)
        args[24] = np.empty((args[24].shape[0], args[24].shape[1] - 1), np.float32)
        return forward_sequence(*args, **kwargs)

    monkeypatch.setattr(_core, "forward_sequence", too_narrow)
    with pytest.raises(ValueError, match="input_tiles must be"):
        gru_fast.gru_forward(**problem, reset_after=True)


# (T, B, I, H): d_gi^T (3H, N) within the kernel's L2 budget (packed whole)
# and beyond it (packed a block at a time); lengths; reversed without biases.
BACKWARD_CONFIGS = [(6, 5, 20, 33), (30, 10, 40, 100), (12, 7, 70, 40)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [False, True])
def test_weight_tiles_give_the_same_gradients_on_any_thread_count(monkeypatch, dtype,
                                                                 reset_after):
    tol = 2e-3 if dtype == np.float32 else 1e-7
    for shape in BACKWARD_CONFIGS:  # all three far from BLAS's sizes (over_rows_on_blas)
        assert not _core.over_rows_on_blas(shape[0] * shape[1], shape[2], shape[3],
                                           np.dtype(dtype).itemsize)
    runs = []
    for tiles in (False, True):
        monkeypatch.setattr(functional, "WEIGHT_TILES", tiles)
        runs.append([])
        _core._force_threads(True)
        try:
            for index, shape in enumerate(BACKWARD_CONFIGS):
                problem = _helpers.make_problem(np.random.default_rng(index), *shape,
                                                dtype=dtype, bias=index != 2)
                if index == 1:
                    problem["lengths"] = np.random.default_rng(9).integers(0, shape[0] + 1,
                                                                           shape[1])
                if index == 2:
                    problem["reverse"] = True
                dy = np.random.default_rng(index + 10).standard_normal(
                    (shape[0], shape[1], shape[3])).astype(dtype)
                per_threads = []
                for threads in (1, 2, 3):
                    monkeypatch.setattr(functional, "core_threads", lambda: threads)
                    per_threads.append(_helpers.core_gradients(problem, reset_after, dy))
                _helpers.assert_runs_bitwise_equal(per_threads, (tiles, shape))
                _helpers.assert_grads_match_reference(per_threads[0], problem, reset_after, dy,
                                                      tol, (tiles, shape))
                runs[-1].append(per_threads[0])
        finally:
            _core._force_threads(None)
    for without, with_tiles in zip(*runs):
        _helpers.assert_runs_bitwise_equal([without, with_tiles], "tiles against none")


def test_weight_tiles_only_where_input_pieces_are_wide():
    panel = _core.PANEL_WIDTH
    wide = 8 * 4 * panel  # 8 pieces of 4 panels
    assert _core.weight_tiles_values(1000, wide, 64, 4) > 0
    assert _core.weight_tiles_values(1000, 8 * panel, 64, 4) == 0  # pieces of one panel
    assert _core.weight_tiles_values(1000, 8 * panel, 64, 4, True) > 0
    assert _core.weight_tiles_values(1000, 2, 64, 4, True) == 0  # the narrow products
    assert _core.weight_tiles_values(0, wide, 64, 4) == 0


def test_core_refuses_weight_tiles_too_small(monkeypatch):
    problem = _helpers.make_problem(np.random.default_rng(7), 6, 5, 20, 33, dtype=np.float64)
    monkeypatch.setattr(functional, "WEIGHT_TILES", True)
    backward_sequence = _core.backward_sequence

    def one_short(*args):
        args = list(args)
        args[-1] = args[-1][:-1]
        return backward_sequence(*args)

    monkeypatch.setattr(_core, "backward_sequence", one_short)
    _, h_n, cache = gru_fast.gru_forward(**problem, return_cache=True)
    with pytest.raises(ValueError, match="weight_tiles must hold"):
        gru_fast.gru_backward(cache, None, np.ones_like(h_n))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("row_split", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_a_chunk_of_one_step_after_tiled_chunks_reads_its_own_rows(short_chunks, monkeypatch,
                                                                   dtype, row_split, reverse):
    """The last chunk can be one step, projected inside its STEP phase without packing
    tiles: it must read x, not the tiles packed for the chunk before.  Whether its rows
    reach a full tile depends on the level's tile (3 double rows at avx2, 6 at avx512),
    so every batch size from 1 to 13 runs, on both splits of the steps."""
    rng = np.random.default_rng(5)
    tol = 2e-4 if dtype == np.float32 else 1e-9
    monkeypatch.setattr(functional, "INPUT_TILES", True)
    _core._set_row_split(row_split)
    try:
        for batch_size in range(1, 14):
            steps_per_chunk = functional.PROJECTION_CHUNK_ROWS // batch_size
            shape = (2 * steps_per_chunk + 1, batch_size, 7, 33)  # chunks, chunks, one step
            problem = _helpers.make_problem(rng, *shape, dtype=dtype)
            y, h_n = gru_fast.gru_forward(**problem, reverse=reverse)
            monkeypatch.setattr(functional, "INPUT_TILES", False)
            y_plain, h_plain = gru_fast.gru_forward(**problem, reverse=reverse)
            monkeypatch.setattr(functional, "INPUT_TILES", True)
            np.testing.assert_array_equal(y, y_plain, err_msg=f"{shape}")
            np.testing.assert_array_equal(h_n, h_plain, err_msg=f"{shape}")
            y_ref, h_ref = reference.gru_forward(**problem, reverse=reverse)
            np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol, err_msg=f"{shape}")
    finally:
        _core._set_row_split(None)
