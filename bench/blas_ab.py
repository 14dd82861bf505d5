#!/usr/bin/env python
"""Products over many rows on BLAS against the packed kernel, side by side in one process.

``--products projection`` (the default): every sample times one forward call
(float32 unless --dtype) (``gru_forward``, reset_after=True) with the input projection forced onto
the packed kernel or onto BLAS (``_core._force_projection``).  ``--products
over_rows``: one forward+backward call with backward's dx, dW_ih, dW_hh
forced onto either (``_core._force_over_rows``).  The variants are
interleaved, each in the settings of --settings:

* quiet: nothing runs before the call but the previous call (back to back, as in a
  training loop or compare.py's samples);
* paused: 0.25 s idle before each call (every library's workers asleep: the first
  call of a burst);
* busy: a NumPy ``A @ A`` (512 x 512, NumPy's own OpenBLAS) right before the
  call, so that BLAS's workers still spin when the core starts;
* blas1: BLAS limited to one thread (threadpoolctl), which shows whether
  BLAS's spinning workers slow the core's own threads in the time loop that
  follows a projection (issue 13): if blas1 beats BLAS's default thread count
  although its GEMMs run on one core, the spinning costs more than it gives.

Each variant is run with the core on 1 and on 2 threads (thread_budget).  The
ratio column is BLAS over packed (< 1: BLAS wins), medians of paired samples.

``--blas-mode pieces`` (projection only) puts BLAS in the step's pieces instead
of on the calling thread: each piece one GEMM per gate on its own hidden
units, run by whichever of the core's threads claims it, with BLAS held to one
thread (in every setting, for both variants): the core's own threads do the
BLAS work and no BLAS worker is left spinning.  ``--chunk-rows`` sets the
rows per projection chunk for both variants, whatever W_ih's size (default: the
rule, ``functional._projection_chunk_rows``).

Usage (under the bench lock)::

    flock -x /tmp/gru_cpu.lock python bench/blas_ab.py [--products over_rows]
        [--shapes large,odd] [--repeats 7] [--threads 1,2] [--settings quiet,paused,busy,blas1]
        [--blas-mode caller|pieces] [--chunk-rows 256]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import gru_fast  # noqa: E402
from gru_fast import _core, functional  # noqa: E402
from gru_fast.functional import thread_budget  # noqa: E402
from benchmarks.common import ALL_SHAPES, make_inputs  # noqa: E402

SHAPES = dict(ALL_SHAPES, odd=(60, 5, 100, 200))  # odd: bench/pipeline.py's


def sample(function, min_time, before=None):
    """Median seconds per call over calls filling min_time, after one warm call.

    `before` runs untimed right before each call (the busy case).
    """
    function()
    times, total = [], 0.0
    while total < min_time or len(times) < 3:
        if before is not None:
            before()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
        total += times[-1]
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", choices=("projection", "over_rows"), default="projection")
    parser.add_argument("--shapes", default="stream,small,medium,large,wide,odd")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--settings", default="quiet,busy,blas1")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.05)
    parser.add_argument("--blas-mode", choices=("caller", "pieces"), default="caller")
    parser.add_argument("--chunk-rows", type=int, default=0)
    args = parser.parse_args()
    if args.blas_mode == "pieces" and args.products != "projection":
        parser.error("--blas-mode pieces is for --products projection")
    if args.chunk_rows:  # exactly these rows, whatever W_ih's size
        functional.PROJECTION_CHUNK_ROWS = args.chunk_rows
        functional.LONG_CHUNKS = 1
    from threadpoolctl import threadpool_limits

    matrix = np.random.default_rng(0).standard_normal((512, 512))
    force = _core._force_projection if args.products == "projection" else _core._force_over_rows
    blas_on = "pieces" if args.blas_mode == "pieces" else True
    print(f"gru_fast {gru_fast.__file__}, level {_core.CPU_LEVEL}, {args.products}, {args.dtype}, "
          f"BLAS {args.blas_mode}, chunks of {args.chunk_rows or 'ruled'} rows; ratio = BLAS / packed")
    print(f"{'case':36s} {'packed':>10s} {'BLAS':>10s} {'ratio':>7s}")
    for shape_name in args.shapes.split(","):
        x, h0, weights, dy = make_inputs(SHAPES[shape_name], args.dtype)
        if args.products == "projection":
            calls = {"gru_forward": lambda: gru_fast.gru_forward(x, h0, *weights,
                                                                 reset_after=True)}
        else:
            def forward_backward():
                _, _, cache = gru_fast.gru_forward(x, h0, *weights, reset_after=True,
                                                   return_cache=True)
                return gru_fast.gru_backward(cache, dy)
            calls = {"fwd+bwd": forward_backward}
        for threads in [int(n) for n in args.threads.split(",")]:
            for setting in args.settings.split(","):
                for call_name, call in calls.items():
                    before = {"busy": lambda: matrix @ matrix,
                              "paused": lambda: time.sleep(0.25)}.get(setting)
                    times = {False: [], True: []}
                    ratios = []
                    for repeat in range(args.repeats):
                        pair = {}
                        for on_blas in ((False, True) if repeat % 2 == 0 else (True, False)):
                            force(blas_on if on_blas else False)
                            limit = (1 if setting == "blas1" or args.blas_mode == "pieces"
                                     else None)
                            with thread_budget(threads), threadpool_limits(limit, "blas"):
                                pair[on_blas] = sample(call, args.min_time, before)
                            time.sleep(0.02)
                        force(None)
                        for key, value in pair.items():
                            times[key].append(value)
                        ratios.append(pair[True] / pair[False])
                    name = f"{shape_name}/{call_name}/{threads}t/{setting}"
                    print(f"{name:36s} {statistics.median(times[False]) * 1e6:9.0f}us "
                          f"{statistics.median(times[True]) * 1e6:9.0f}us "
                          f"{statistics.median(ratios):7.3f}", flush=True)


if __name__ == "__main__":
    main()
