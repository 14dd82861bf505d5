"""The L2 size read from the machine (gru_fast._caches) and the kernel's blocks sized by it."""

import numpy as np
import pytest

import _helpers
import gru_fast
from gru_fast import _caches, _core


def test_sysfs_sizes_parse():
    assert _caches._parse_size("512K\n") == 512 << 10
    assert _caches._parse_size("2M") == 2 << 20
    assert _caches._parse_size("1048576") == 1 << 20
    assert _caches._parse_size("") == 0
    assert _caches._parse_size("lots") == 0


def test_level2_found_in_a_sysfs_tree(tmp_path):
    for index, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"),
                                                 (2, "Unified", "2048K"), (3, "Unified", "32M")]):
        entry = tmp_path / f"index{index}"
        entry.mkdir()
        (entry / "level").write_text(f"{level}\n")
        (entry / "type").write_text(f"{kind}\n")
        (entry / "size").write_text(f"{size}\n")
    assert _caches._from_sysfs(tmp_path) == 2 << 20
    assert _caches._from_sysfs(tmp_path / "absent") == 0


def test_the_kernel_plans_with_half_the_machines_level2():
    level2 = _caches.level2_cache_bytes()
    assert level2 >= 64 << 10
    assert _core.level2_budget() == max(level2 // 2, 64 << 10)
    assert gru_fast.show_config("dicts")["cpu"]["kernel_level2_budget"] == _core.level2_budget()
    with pytest.raises(ValueError, match="level2_bytes"):
        _core.set_level2_cache(0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocks_of_rows_give_the_same_bits(dtype):
    """The large products in blocks of rows (a small L2) sum every column as unblocked."""
    rng = np.random.default_rng(3)
    # T*B = 600 rows of 40 inputs: backward's dW_ih and dx products take all rows at once
    problem = _helpers.make_problem(rng, 30, 20, 40, 70, dtype=dtype)
    dy = rng.standard_normal((30, 20, 70)).astype(dtype)
    runs = []
    try:
        for level2 in (1 << 30, 128 << 10):  # one block; blocks of a few row tiles
            _core.set_level2_cache(level2)
            y, h_n = gru_fast.gru_forward(**problem, reset_after=True)
            grads = _helpers.core_gradients(problem, True, dy)
            runs.append((y, h_n, grads))
    finally:
        _core.set_level2_cache(_caches.level2_cache_bytes())
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    _helpers.assert_runs_bitwise_equal([runs[0][2], runs[1][2]], "L2 budget")
    _helpers.assert_grads_match_reference(runs[1][2], problem, True, dy,
                                          _helpers.tolerance("gradient", dtype)[0])
