"""The PNG chart of compare.py: GFLOP/s of every contestant, one panel per task."""

import numpy as np

from .tasks import CONTESTANT_ORDER, SHAPES, TASKS


def plot(results, peak, shape_names, path):
    """Write the chart to ``path``; False when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    colors = {"gru_fast": "tab:blue", "gru_fast_frozen": "tab:cyan", "torch": "tab:orange",
              "onnxruntime": "tab:green", "reference": "tab:gray"}
    fig, axes = plt.subplots(len(TASKS), 1, figsize=(9, 3.0 * len(TASKS)), sharex=True)
    for ax, (task, title, *_rest) in zip(np.atleast_1d(axes), TASKS):
        width = 0.8 / len(CONTESTANT_ORDER)
        for k, contestant in enumerate(CONTESTANT_ORDER):
            xs, ys = [], []
            for i, shape in enumerate(shape_names):
                entry = results.get(task, {}).get(shape, {}).get(contestant)
                if entry is not None:
                    xs.append(i + (k - (len(CONTESTANT_ORDER) - 1) / 2) * width)
                    ys.append(entry["gflops"])
            if xs:
                ax.bar(xs, ys, width, label=contestant, color=colors[contestant])
        ax.axhline(peak / 1e9, color="k", linestyle="--", linewidth=0.8,
                   label="sgemm peak")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("GFLOP/s")
        ax.legend(fontsize=7, ncol=5, loc="upper left")
    axes[-1].set_xticks(range(len(shape_names)))
    axes[-1].set_xticklabels([f"{s}\n{SHAPES[s]}" for s in shape_names], fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
