#!/usr/bin/env python
"""How long a worker spins between phases of a call: two settings A/B, in one process.

`_core._set_call_spin(seconds)` sets how long a worker idle between phases spins
(yielding its core) while a call holds the pool, before it sleeps.  Rounds alternate
the settings; each round times FrozenGRU forward calls (float32, reset_after=True)
right after each scenario of bench/pipeline.py: idle (a 20 ms sleep), a NumPy 512²
matmul, an ONNX Runtime run of the same layer, a PyTorch 256² matmul.  Reports the
median per setting and their ratio (second / first; < 1: the second is faster).

    flock /tmp/gru_bench.lock python bench/call_spin_ab.py [--shapes stream,small,odd,large]
        [--rounds 30] [--settings 0.00005,0.004]

Needs onnxruntime, onnx and torch (the peers of bench/pipeline.py).
"""
import argparse
import statistics
import time

import numpy as np

SHAPES = {"stream": (100, 1, 64, 64), "small": (100, 8, 64, 128),
          "medium": (100, 32, 128, 256), "odd": (60, 5, 100, 200),
          "large": (50, 64, 512, 512)}
CALLS = 5  # per scenario, setting and round


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="stream,small,odd,large")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--settings", default="0.00005,0.004",
                        help="two call spins in seconds (the old 50 us, the new 4 ms)")
    args = parser.parse_args()
    import onnxruntime as ort
    import torch
    import gru_fast
    from gru_fast import _core, interop

    shapes = args.shapes.split(",")
    settings = [float(value) for value in args.settings.split(",")]
    rng = np.random.default_rng(0)
    square = rng.standard_normal((512, 512)).astype(np.float32)
    torch_square = torch.randn(256, 256)
    models = {}
    for name in shapes:
        seq_len, batch, inputs, hidden = SHAPES[name]
        x = rng.standard_normal((seq_len, batch, inputs)).astype(np.float32)
        layer = gru_fast.GRU(inputs, hidden, reset_after=True, seed=0)
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(interop.to_onnx(layer).SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        models[name] = (layer.freeze(), x, session, {session.get_inputs()[0].name: x})
    scenarios = {
        "idle": lambda model: time.sleep(0.02),
        "numpy": lambda model: square @ square,
        "ort": lambda model: model[2].run(None, model[3]),
        "torch": lambda model: torch.mm(torch_square, torch_square),
    }
    times = {(setting, name, scenario): [] for setting in settings for name in shapes
             for scenario in scenarios}
    previous = _core._set_call_spin(settings[0])
    try:
        for round_ in range(args.rounds):
            for setting in settings if round_ % 2 == 0 else settings[::-1]:
                _core._set_call_spin(setting)
                for name in shapes:
                    frozen, x, _, _ = model = models[name]
                    for scenario, before in scenarios.items():
                        for _ in range(CALLS):
                            before(model)
                            start = time.perf_counter()
                            frozen.forward(x)
                            times[(setting, name, scenario)].append(time.perf_counter() - start)
    finally:
        _core._set_call_spin(previous)
    print(f"{'shape':8s} {'after':6s} " + " ".join(f"{s * 1e3:>8.2f} ms" for s in settings)
          + "  second/first")
    for name in shapes:
        for scenario in scenarios:
            medians = [statistics.median(times[(s, name, scenario)]) * 1e3 for s in settings]
            print(f"{name:8s} {scenario:6s} " + " ".join(f"{m:9.3f}ms" for m in medians)
                  + f"  {medians[1] / medians[0]:12.3f}")


if __name__ == "__main__":
    main()
