"""A forward call's Python right after another library: compiled checks against Python ones.

    python bench/cold_checks_ab.py [--repeats 30] [--shape 100,1,64,64] [--threads 2]

Inside a pipeline the Python before the core runs cold: NumPy's or ONNX
Runtime's last call evicted its code and data from the caches.  Since stop 36
the checks of plain arrays (`gru_fast._fastpath.plain_forward_arrays`,
`plain_lengths`) and the bias folding (`fold_plain_biases`) run in C; the
Python checks remain for everything else.  This script times, one call at a
time right after each scenario of bench/pipeline.py (idle, a NumPy 512² matmul,
an ONNX Runtime session run when onnxruntime is installed), with the compiled
path (``compiled``) and with it switched off (``python``: the module attributes
patched, so every check and fold takes the Python path), alternating call by
call:

* ``gru_forward``: the whole call (float32, reset_after=True, with h0);
* ``validate``: `_validation.validate_forward_args` alone;
* ``fold``: `functional.fold_biases` alone;
* ``FrozenGRU``, ``GRU`` (one layer, weights packed per call) and ``GRU.freeze()``
  (a FrozenGRULayer): their checks of plain arrays and params compiled or not.

Prints per scenario the median microseconds of each, and python / compiled.
The results of both paths are checked to be the same bits first.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gru_fast  # noqa: E402
from gru_fast import _validation, frozen, functional, layer  # noqa: E402
from benchmarks.common import make_inputs  # noqa: E402
from benchmarks.pipeline_scenarios import make_scenario  # noqa: E402

# (module, attribute) of every compiled check or fold the Python code calls, and
# what it returns for "not plain: do it in Python"
_COMPILED = {(module, name): (getattr(module, name), not_plain) for module, name, not_plain in (
    (_validation, "plain_forward_arrays", False), (functional, "fold_plain_biases", None),
    (frozen, "plain_sequence_input", False), (layer, "plain_sequence_input", False))}


def use_compiled(on):
    """Switch the compiled checks and fold on (the default) or off."""
    for (module, name), (compiled, not_plain) in _COMPILED.items():
        setattr(module, name, compiled if on else (lambda *args, _result=not_plain: _result))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--shape", default="100,1,64,64", help="T,B,I,H")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads of the scenarios' NumPy/ONNX Runtime work")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    x, h0, weights, _ = make_inputs(shape, "float32")
    hidden_size = shape[3]
    frozen_gru = gru_fast.FrozenGRU(*weights, reset_after=True)
    net = gru_fast.GRU(shape[2], hidden_size, reset_after=True, seed=0)
    for name, value in zip(net._names(0, 0), weights):
        net.params[name][...] = value
    frozen_net = net.freeze()
    h0_layer = h0[None]
    calls = {
        "gru_forward": lambda: gru_fast.gru_forward(x, h0, *weights, reset_after=True),
        "validate": lambda: _validation.validate_forward_args(x, h0, *weights, True, None,
                                                              False),
        "fold": lambda: functional.fold_biases(weights[2], weights[3], hidden_size, True,
                                               weights[1].dtype),
        "FrozenGRU": lambda: frozen_gru(x, h0),
        "GRU": lambda: net(x, h0_layer),
        "GRU.freeze()": lambda: frozen_net(x, h0_layer),
    }
    for name in ("gru_forward", "FrozenGRU", "GRU", "GRU.freeze()"):
        results = {}
        for on in (True, False):
            use_compiled(on)
            results[on] = calls[name]()
        for a, b in zip(results[True], results[False]):
            assert a.tobytes() == b.tobytes(), f"{name}: the two paths must give the same bits"
    scenarios = {"idle": make_scenario("idle", args.threads, 0.2),
                 "numpy": make_scenario("numpy", args.threads)}
    try:
        scenarios["onnxruntime"] = make_scenario("onnxruntime", args.threads)
    except ImportError:
        print("onnxruntime not installed: its scenario is left out")
    samples = {(s, c, on): [] for s in scenarios for c in calls for on in (True, False)}
    for on in (True, False):  # warm up both paths
        use_compiled(on)
        for fn in calls.values():
            fn()
    names = list(calls)
    for repeat in range(args.repeats):
        for s_index, scenario in enumerate(scenarios):
            for c_index in range(len(names)):
                name = names[(c_index + repeat + s_index) % len(names)]
                for on in ((True, False) if repeat % 2 else (False, True)):
                    use_compiled(on)
                    scenarios[scenario]()
                    start = time.perf_counter()
                    calls[name]()
                    samples[scenario, name, on].append(time.perf_counter() - start)
    use_compiled(True)
    print(f"shape {shape} (T, B, I, H) float32, reset_after=True; median us of "
          f"{args.repeats} calls, each right after its scenario")
    print(f"  {'scenario':<12} {'call':<12} {'compiled':>9} {'python':>9} {'python/compiled':>16}")
    for scenario in scenarios:
        for name in names:
            fast = statistics.median(samples[scenario, name, True]) * 1e6
            slow = statistics.median(samples[scenario, name, False]) * 1e6
            print(f"  {scenario:<12} {name:<12} {fast:>9.1f} {slow:>9.1f} {slow / fast:>15.2f}x")


if __name__ == "__main__":
    main()
