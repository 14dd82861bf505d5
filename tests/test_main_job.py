"""`python -m gru_fast` (the main job), `check` and `bench`."""

import numpy as np
import pytest

from gru_fast import __main__ as main_module


def test_check_and_bench_subcommands(capsys):
    assert main_module.main(["check"]) == 0
    out = capsys.readouterr().out
    assert "Self-check passed" in out and "FAILED" not in out
    assert main_module.main(["bench", "--shape", "6", "2", "3", "4", "--repeats", "1"]) == 0
    assert "forward+backward" in capsys.readouterr().out


def test_main_job_beats_the_baselines(tmp_path, capsys, monkeypatch):
    pytest.importorskip("statsmodels")
    pytest.importorskip("sklearn")
    from gru_fast import _demo

    # PyTorch's timing is the job's business, not this test's (it can take seconds).
    monkeypatch.setattr(_demo, "time_torch_epochs", lambda *args, **kwargs: None)
    plot = tmp_path / "plot.png"
    errors = _demo.run(plot_path=str(plot), verbose=0)
    out = capsys.readouterr().out
    persistence = errors.pop("persistence")
    (ar_name, ar_error), (gru_name, gru_error) = errors.items()
    assert ar_name.startswith("linear AR(") and gru_name.startswith("GRU")
    assert gru_error < 0.7 * persistence and ar_error < persistence
    assert "Held-out error" in out and "ms/epoch" in out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "No plot" in out
    else:
        assert plot.stat().st_size > 10_000


def test_autoregression_recovers_a_known_process():
    from gru_fast import _demo

    rng = np.random.default_rng(0)
    values = np.zeros(3000)
    for t in range(2, len(values)):
        values[t] = 0.6 * values[t - 1] - 0.3 * values[t - 2] + 1.0 + 0.1 * rng.standard_normal()
    X, y = _demo.make_windows(values, 5)
    assert _demo.choose_ar_order(X, y, 500) >= 2
    coefficients = _demo.fit_autoregression(X, y, 2)
    np.testing.assert_allclose(coefficients, [-0.3, 0.6, 1.0], atol=0.03)


def test_plot_option_before_or_after_train(monkeypatch):
    from gru_fast import _demo

    calls = []
    monkeypatch.setattr(_demo, "run", lambda plot_path: calls.append(plot_path))
    for argv in ([], ["--plot", "a.png"], ["train", "--plot", "b.png"], ["train"]):
        assert main_module.main(argv) == 0
    assert calls == ["gru_fast_sunspots.png", "a.png", "b.png", "gru_fast_sunspots.png"]
