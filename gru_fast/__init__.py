"""gru_fast: fast CPU Gated Recurrent Units with exact gradients, NumPy in and out.

The compiled core (Cython, with a packed-weight GEMM kernel and its own worker threads)
runs a whole sequence of one layer and one direction with the GIL released; `gru_fast.reference` is the
pure-NumPy oracle with the same API.

Public API
----------
gru_forward, gru_backward
    One layer, one direction, whole sequence (see `gru_fast.functional`).
FrozenGRU
    One layer and direction with weights packed once, for inference
    (see `gru_fast.frozen`).
GRU
    Stacked, bidirectional, batch-first layer with parameters named like
    ``torch.nn.GRU`` (see `gru_fast.layer`); ``GRU.freeze()`` gives a
    FrozenGRULayer for inference, its weights packed once.
show_config
    The CPU level of the compiled core in use (one build per level, chosen at
    import), its panel width, OpenMP threads and BLAS (see `gru_fast._config`).
reference, interop
    The NumPy oracle; converters to and from PyTorch, Keras and ONNX.
release_memory
    Free the scratch kept between calls (see `gru_fast._workspace`).
optim, losses, linear, network
    Optimizers (SGD, Adam, AdamW, gradient clipping), losses with their
    gradients, a linear head, and the GRU + head network that training uses.
save, load
    Models to and from one .npz file (arrays and a JSON header, never a pickle).
estimators
    GRURegressor and GRUClassifier, scikit-learn estimators (needs
    scikit-learn; ``from gru_fast.estimators import GRURegressor``), which
    also fit dask arrays where their chunks live.
dask
    ``gru_fast.dask.forward``: lazy batch-parallel inference over dask arrays,
    on Dask's threads or a distributed cluster (needs dask; ``import gru_fast.dask``).
"""

from ._config import show_config
from .frozen import FrozenGRU, FrozenGRULayer
from ._cache import GRUCache
from .functional import gru_backward, gru_forward
from .layer import GRU
from ._workspace import release_memory
from . import interop, reference  # noqa: F401  (gru_fast.reference.* without another import)
from . import linear, losses, network, optim  # noqa: F401
from .serialization import load, save

__version__ = "0.1.0"
__all__ = ["FrozenGRU", "FrozenGRULayer", "GRU", "GRUCache", "gru_backward", "gru_forward",
           "load", "release_memory", "save", "show_config", "__version__"]
