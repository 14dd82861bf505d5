"""What compare.py times: the tasks, the shapes and the useful FLOPs of each."""

from benchmarks.common import ALL_SHAPES as SHAPES  # noqa: F401  (T, B, I, H) by name

PEAK_N = 1536  # sgemm peak: (N, N) @ (N, N) float32
QUICK_NO_REFERENCE = ("large", "wide")  # --quick leaves the slow NumPy reference out here
GROWTH_SHAPES = ("stream", "small", "medium")  # memory measured at 4T and 8T steps too
MAX_GROWTH_PER_STEP = 32  # bytes: per-step integers (batch sizes, offsets) are allowed

# Tasks: (key, title, dtype, reset_after, pass).  pass is "fwd" or "fwdbwd".
TASKS = [
    ("fwd_f32_ra0", "forward float32 reset_after=False", "float32", False, "fwd"),
    ("fwd_f32_ra1", "forward float32 reset_after=True", "float32", True, "fwd"),
    ("fwd_f64_ra1", "forward float64 reset_after=True", "float64", True, "fwd"),
    ("fb_f32_ra1", "forward+backward float32 reset_after=True", "float32", True, "fwdbwd"),
    ("fb_f64_ra1", "forward+backward float64 reset_after=True", "float64", True, "fwdbwd"),
]
TASK_TITLES = {key: title for key, title, *_ in TASKS}
CONTESTANT_ORDER = ["gru_fast", "gru_fast_frozen", "torch", "onnxruntime", "reference"]


def forward_flops(shape):
    """Useful FLOPs of one forward pass of one layer-direction: 2*T*B*3H*(I+H)."""
    seq_len, batch_size, input_size, hidden_size = shape
    return 2 * seq_len * batch_size * 3 * hidden_size * (input_size + hidden_size)


def task_flops(shape, pass_):
    """Useful FLOPs of a task: forward, or forward+backward counted as 3 forwards."""
    return forward_flops(shape) * (3 if pass_ == "fwdbwd" else 1)
