"""The pace against forced threads and forced serial, sampled over minutes, beside ONNX Runtime.

    flock /tmp/gru_bench.lock python bench/pace_monitor.py SECONDS

Every ~4 s: medium (100, 32, 128, 256) FrozenGRU forward float32, median of 5 calls
each with the pace (auto), forced threads (thr) and forced serial (ser), then ONNX
Runtime with 2 and 1 intra-op threads; and the pace's counters over the auto calls
(`_core._thread_stats`: late workers, spells, passes, trials of threads and those won,
blocks run serially by the estimates).  One line per sample.  Compare two builds by
alternating runs of 40-60 s under each (``PYTHONPATH=/path/to/other``).
"""
import numpy as np, time, statistics, os, sys
import onnxruntime as ort
import gru_fast
from gru_fast import _core, interop
if os.environ.get("GRU_FAST_CALL_SPIN"):  # seconds a worker spins between phases of a call
    print("call spin", os.environ["GRU_FAST_CALL_SPIN"], "s; was", _core._set_call_spin(float(os.environ["GRU_FAST_CALL_SPIN"])))
T,B,I,H=100,32,128,256
r=np.random.default_rng(0)
x=r.standard_normal((T,B,I)).astype(np.float32)
w=[r.uniform(-.06,.06,s).astype(np.float32) for s in ((3*H,I),(3*H,H),(3*H,),(3*H,))]
f=gru_fast.FrozenGRU(*w,reset_after=True)
layer=gru_fast.GRU(I,H,reset_after=True,seed=0)
m=interop.to_onnx(layer).SerializeToString()
sess={}
for n in (1,2):
    so=ort.SessionOptions(); so.intra_op_num_threads=n; so.inter_op_num_threads=1
    sess[n]=ort.InferenceSession(m,so,providers=["CPUExecutionProvider"])
feeds={sess[1].get_inputs()[0].name:x}
def tm(fn,n=5):
    ts=[]
    for _ in range(n):
        s=time.perf_counter(); fn(); ts.append(time.perf_counter()-s)
    return statistics.median(ts)*1e3
end=time.time()+float(sys.argv[1]) if len(sys.argv) > 1 else time.time() + 60
while time.time()<end:
    row={}
    a=_core._thread_stats()
    for k,v in (("auto",None),("thr",True),("ser",False)):
        _core._force_threads(v); f(x); row[k]=tm(lambda: f(x))
        if k=="auto": b=_core._thread_stats()
    _core._force_threads(None)
    for n in (2,1):
        sess[n].run(None,feeds); row[f"ort{n}"]=tm(lambda: sess[n].run(None,feeds))
    late=b['late_workers']-a['late_workers']; sp=b['serial_phases']-a['serial_phases']; tp=b['threaded_phases']-a['threaded_phases']
    d={k:b[k]-a[k] for k in ("late_spells","late_passed","thread_trials","thread_trials_won","serial_blocks_chosen")}
    print(time.strftime("%H:%M:%S"), " ".join(f"{k} {v:5.1f}" for k,v in row.items()), f"| auto ser {sp/max(1,sp+tp):.2f} late {late}", d, flush=True)
    time.sleep(3)
