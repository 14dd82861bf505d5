"""Save and load models as one ``.npz``: the arrays plus a JSON header, never a pickle.

A pickle runs code when it is loaded, so a model file from elsewhere would be
as dangerous as a script.  `save` writes NumPy's ``.npz`` (a zip of ``.npy``
arrays) with one more entry, ``__gru_fast__``: a JSON text giving the format
version, the class and every constructor setting (``reset_after`` included).
`load` opens it with ``allow_pickle=False`` and rebuilds the object from the
settings and arrays through the public constructors, which check every shape;
a file that holds a pickle (a raw pickle, or an ``.npz`` with object arrays)
is refused with a `ValueError`, never unpickled.

Saved: `GRU` (and the reference's GRU), `FrozenGRULayer`, `FrozenGRU`, and
fitted `GRURegressor` / `GRUClassifier`: their network, ``classes_``, the loss
curve and the other fitted attributes, and what training continues from (the
optimizer's step count and moments, the state of the shuffling generator, the
validation split's seed), so that ``partial_fit`` or a ``warm_start`` fit
after `load` takes exactly the steps it would have taken without the round
trip.
"""

import json
import os
import zipfile

import numpy as np

__all__ = ["save", "load", "FORMAT_VERSION"]

FORMAT = "gru_fast"
FORMAT_VERSION = 1
HEADER_KEY = "__gru_fast__"


# ---------------------------------------------------------------------------- describing
def _gru_config(layer):
    return {"input_size": layer.input_size, "hidden_size": layer.hidden_size,
            "num_layers": layer.num_layers, "bias": layer.bias,
            "batch_first": layer.batch_first, "bidirectional": layer.bidirectional,
            "reset_after": layer.reset_after, "dtype": layer.dtype.name}


def _label_array(values, name):
    """Labels as an array NumPy stores without pickle, and how to restore their dtype."""
    values = np.asarray(values)
    if values.dtype != object:
        return values, None
    if all(isinstance(value, str) for value in values):
        return values.astype(str), "object"
    raise ValueError(f"{name} has dtype object with non-string values; it cannot be "
                     f"saved without pickle (use numeric or string labels)")


def _describe_estimator(estimator):
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "gru_")
    params = estimator.get_params()
    random_state = params["random_state"]
    if random_state is not None and not isinstance(random_state, (int, np.integer)):
        params["random_state"] = None   # a RandomState object has no JSON form
    elif random_state is not None:
        params["random_state"] = int(random_state)
    network = estimator._network
    network.adopt()   # gru_/head_ as the user sees them
    arrays = {f"network/{name}": value for name, value in network.params.items()}
    arrays["loss_curve_"] = np.asarray(estimator.loss_curve_, dtype=np.float64)
    fitted = {"n_iter_": int(estimator.n_iter_), "best_loss_": float(estimator.best_loss_),
              "n_features_in_": int(estimator.n_features_in_),
              "table_input": bool(estimator._table_input),
              "input_size": network.gru.input_size, "output_size": network.output_size}
    if hasattr(estimator, "_y_ndim"):
        fitted["y_ndim"] = int(estimator._y_ndim)
    if hasattr(estimator, "validation_scores_"):
        arrays["validation_scores_"] = np.asarray(estimator.validation_scores_, np.float64)
        fitted["best_validation_score_"] = float(estimator.best_validation_score_)
    for name in ("classes_", "feature_names_in_"):
        if hasattr(estimator, name):
            arrays[name], fitted[name + "dtype"] = _label_array(getattr(estimator, name), name)
    fitted["training"] = _describe_training(estimator, arrays)
    return {"params": params, "fitted": fitted}, arrays


def _describe_training(estimator, arrays):
    """What the next epoch depends on: optimizer state (into `arrays`), random streams."""
    training = {"shuffle_state": estimator._shuffle_rng.bit_generator.state,
                "split_seed": int(estimator._split_seed),
                "no_improvement_count": int(estimator._no_improvement_count)}
    optimizer = getattr(estimator, "_optimizer", None)
    if optimizer is not None:
        state = optimizer.state_dict()
        buffers = state["state"]["flat"]
        training["optimizer"] = {"solver": estimator._optimizer_solver,
                                 "step_count": int(state["step_count"]),
                                 "buffers": sorted(buffers)}
        for key, value in buffers.items():
            arrays[f"optimizer/{key}"] = value
    return training


def _describe(obj):
    """(class name, JSON-able config, dict of arrays) of a savable object."""
    from .frozen import FrozenGRU
    from .layer import GRU, FrozenGRULayer
    from . import reference

    if isinstance(obj, FrozenGRULayer):
        return "FrozenGRULayer", _gru_config(obj), dict(obj.params)
    if isinstance(obj, reference.GRU):
        return "reference.GRU", _gru_config(obj), dict(obj.params)
    if type(obj) is GRU:
        return "GRU", _gru_config(obj), dict(obj.params)
    if isinstance(obj, FrozenGRU):
        weights = {name: value for name, value in obj.weights().items() if value is not None}
        config = {"input_size": obj.input_size, "hidden_size": obj.hidden_size,
                  "bias": "bias_ih" in weights, "reset_after": obj.reset_after,
                  "dtype": obj.dtype.name}
        return "FrozenGRU", config, weights
    name = type(obj).__name__
    if name in ("GRURegressor", "GRUClassifier") and type(obj).__module__ == "gru_fast.estimators":
        config, arrays = _describe_estimator(obj)
        return name, config, arrays
    raise TypeError(f"gru_fast.save saves GRU, FrozenGRULayer, FrozenGRU, GRURegressor and "
                    f"GRUClassifier objects, got {type(obj).__name__}")


def save(obj, path):
    """Save a model to one ``.npz`` file: its arrays and a JSON header, no pickle.

    Parameters
    ----------
    obj : GRU, FrozenGRULayer, FrozenGRU, GRURegressor or GRUClassifier
        The model (estimators must be fitted).
    path : str, os.PathLike or writable binary file
        Where to write. Like ``numpy.savez``, ``.npz`` is appended to a file name
        that does not end with it.

    Raises
    ------
    TypeError
        For another kind of object.
    ValueError
        For labels that NumPy can only store as a pickle (``classes_`` of mixed
        object types).

    Examples
    --------
    >>> import gru_fast, tempfile, os
    >>> gru = gru_fast.GRU(4, 8, reset_after=True, seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "gru.npz")
    >>> gru_fast.save(gru, path)
    >>> gru_fast.load(path).reset_after
    True
    """
    from . import __version__

    class_name, config, arrays = _describe(obj)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "class": class_name,
              "gru_fast_version": __version__, "config": config}
    for name in arrays:
        if name == HEADER_KEY:
            raise ValueError(f"an array may not be named {HEADER_KEY!r}")
    np.savez(path, **{HEADER_KEY: np.array(json.dumps(header))},
             **{name: np.asarray(value) for name, value in arrays.items()})


# ---------------------------------------------------------------------------- loading
def _refuse_pickle(path, error):
    return ValueError(f"{os.fspath(path) if not hasattr(path, 'read') else 'the file'} "
                      f"holds pickled data, which gru_fast.load never reads (unpickling "
                      f"can run arbitrary code); only files written by gru_fast.save "
                      f"load ({error})")


def _check_sizes(config, arrays, prefix=""):
    """The header's sizes must be those of the layer-0 arrays (before allocating anything)."""
    hidden_size, input_size = config["hidden_size"], config["input_size"]
    weight_ih, weight_hh = arrays.get(prefix + "weight_ih_l0"), arrays.get(prefix + "weight_hh_l0")
    if weight_ih is None or weight_hh is None:
        raise ValueError(f"the archive lacks {prefix}weight_ih_l0 / {prefix}weight_hh_l0")
    if not all(isinstance(value, int) and not isinstance(value, bool) and value >= 1
               for value in (hidden_size, input_size, config.get("num_layers", 1))):
        raise ValueError(f"the header's sizes must be positive integers, got {config}")
    if (weight_ih.shape != (3 * hidden_size, input_size)
            or weight_hh.shape != (3 * hidden_size, hidden_size)):
        raise ValueError(f"the header says hidden_size={hidden_size}, input_size="
                         f"{input_size}, but weight_ih_l0 is {weight_ih.shape} and "
                         f"weight_hh_l0 is {weight_hh.shape}")
    num_layers = config.get("num_layers", 1)
    if prefix + f"weight_hh_l{num_layers - 1}" not in arrays:
        raise ValueError(f"the header says num_layers={num_layers}, but the archive lacks "
                         f"{prefix}weight_hh_l{num_layers - 1}")


def _sniff(path):
    """What the file starts like: "zip" (.npz), "npy", "pickle" or "other"."""
    if hasattr(path, "read"):
        position = path.tell()
        magic = path.read(6)
        path.seek(position)
    else:
        with open(path, "rb") as file:
            magic = file.read(6)
    if magic.startswith(b"PK\x03\x04") or magic.startswith(b"PK\x05\x06"):
        return "zip"
    if magic.startswith(b"\x93NUMPY"):
        return "npy"
    if magic[:1] == b"\x80" or magic[:1] in (b"(", b"c", b"]", b"}"):
        return "pickle"   # protocol 2+ opcode PROTO, or protocol 0/1 openers
    return "other"


def _build_gru(config, arrays, class_name):
    from .layer import GRU
    from . import reference

    _check_sizes(config, arrays)

    cls = reference.GRU if class_name == "reference.GRU" else GRU
    layer = cls(config["input_size"], config["hidden_size"], config["num_layers"],
                bias=config["bias"], batch_first=config["batch_first"],
                bidirectional=config["bidirectional"], reset_after=config["reset_after"],
                dtype=config["dtype"])
    layer.load_state_dict(arrays)
    return layer.freeze() if class_name == "FrozenGRULayer" else layer


def _build_frozen(config, arrays):
    from .frozen import FrozenGRU

    dtype = np.dtype(config["dtype"])
    weights = {name: arrays.get(name) for name in ("weight_ih", "weight_hh", "bias_ih",
                                                   "bias_hh")}
    for name, value in weights.items():
        if value is not None and value.dtype != dtype:
            raise ValueError(f"{name} has dtype {value.dtype}, the header says {dtype}")
    frozen = FrozenGRU(**weights, reset_after=config["reset_after"])
    if (frozen.input_size, frozen.hidden_size) != (config["input_size"],
                                                   config["hidden_size"]):
        raise ValueError("the weights' shapes do not match the header's sizes")
    return frozen


def _build_estimator(class_name, config, arrays):
    from . import estimators
    from .network import HEAD_PREFIX, GRUNetwork

    estimator = getattr(estimators, class_name)(**config["params"])
    estimator._check_hyperparameters()
    fitted = config["fitted"]
    _check_sizes({"hidden_size": estimator.hidden_size, "input_size": fitted["input_size"],
                  "num_layers": estimator.num_layers}, arrays, prefix="network/")
    for name in ("classes_", "feature_names_in_"):
        if name in arrays:
            value = arrays[name]
            if fitted.get(name + "dtype") == "object":
                value = value.astype(object)
            setattr(estimator, name, value)
    network = GRUNetwork(fitted["input_size"], estimator.hidden_size, fitted["output_size"],
                         num_layers=estimator.num_layers,
                         bidirectional=bool(estimator.bidirectional),
                         reset_after=bool(estimator.reset_after), loss=estimator._loss,
                         dtype=estimator.dtype)
    prefix = "network/"
    saved = {name[len(prefix):]: value for name, value in arrays.items()
             if name.startswith(prefix)}
    network.gru.load_state_dict({name: value for name, value in saved.items()
                                 if not name.startswith(HEAD_PREFIX)})
    for name, current in network.head.params.items():
        value = saved.get(HEAD_PREFIX + name)
        if value is None or value.shape != current.shape:
            raise ValueError(f"{HEAD_PREFIX + name} is missing or has the wrong shape "
                             f"(expected {current.shape})")
        current[...] = value
    network.adopt()
    estimator._network = network
    estimator.gru_, estimator.head_ = network.gru, network.head
    estimator.n_iter_ = fitted["n_iter_"]
    estimator.best_loss_ = fitted["best_loss_"]
    estimator.loss_curve_ = [float(value) for value in arrays["loss_curve_"]]
    estimator.n_features_in_ = fitted["n_features_in_"]
    estimator._table_input = fitted["table_input"]
    if "y_ndim" in fitted:
        estimator._y_ndim = fitted["y_ndim"]
    if "validation_scores_" in arrays:
        estimator.validation_scores_ = [float(v) for v in arrays["validation_scores_"]]
        estimator.best_validation_score_ = fitted["best_validation_score_"]
    estimator._start_random_streams()
    estimator._no_improvement_count = 0
    if "training" in fitted:  # files written before it was saved start a new optimizer
        _restore_training(estimator, fitted["training"], arrays)
    return estimator


def _restore_training(estimator, training, arrays):
    """Put back what `_describe_training` saved (checked: it comes from a file)."""
    from ._training import make_optimizer

    if not isinstance(training, dict):
        raise ValueError("the header's training state is not a mapping")
    generator = np.random.default_rng()
    try:
        generator.bit_generator.state = training["shuffle_state"]
    except (TypeError, ValueError, OverflowError, KeyError) as error:
        raise ValueError(f"the saved state of the shuffling generator is not valid: "
                         f"{error!r}") from None
    split_seed, count = training["split_seed"], training["no_improvement_count"]
    if not all(isinstance(value, int) and not isinstance(value, bool) and value >= 0
               for value in (split_seed, count)):
        raise ValueError(f"split_seed and no_improvement_count must be non-negative "
                         f"integers, got {split_seed!r} and {count!r}")
    estimator._shuffle_rng = generator
    estimator._split_seed, estimator._no_improvement_count = split_seed, count
    saved = training.get("optimizer")
    if saved is None:
        return
    if not isinstance(saved, dict) or saved.get("solver") not in ("adam", "sgd"):
        raise ValueError("the saved optimizer state names no stochastic solver")
    buffers = saved.get("buffers")
    if not isinstance(buffers, list) or not all(f"optimizer/{key}" in arrays
                                                for key in buffers):
        raise ValueError(f"the archive lacks the optimizer buffers {buffers!r}")
    network = estimator._network
    optimizer = make_optimizer(saved["solver"], {"flat": network.flat},
                               estimator.learning_rate)
    optimizer.load_state_dict({"step_count": saved.get("step_count"), "state": {
        "flat": {key: arrays[f"optimizer/{key}"] for key in buffers}}})
    estimator._optimizer, estimator._optimizer_solver = optimizer, saved["solver"]


def load(path):
    """Load a model written by `save`, without ever unpickling anything.

    Parameters
    ----------
    path : str, os.PathLike or readable binary file
        A ``.npz`` file written by `save`.

    Returns
    -------
    GRU, FrozenGRULayer, FrozenGRU, GRURegressor or GRUClassifier
        The model, rebuilt through its constructor (so its settings and array
        shapes are checked); estimators come back fitted.

    Raises
    ------
    ValueError
        If the file holds a pickle, is not a ``.npz`` written by `save`, comes
        from a newer format version, or its arrays do not fit its header.
    """
    kind = _sniff(path)
    if kind == "pickle":
        raise _refuse_pickle(path, "it starts like a pickle")
    if kind != "zip":
        raise ValueError(f"{path!r} is not a file written by gru_fast.save (not a .npz "
                         f"archive{': a single .npy array' if kind == 'npy' else ''})")
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError as error:
        if "pickle" in str(error):
            raise _refuse_pickle(path, error) from None
        raise ValueError(f"{path!r} is not a file written by gru_fast.save: {error}") \
            from None
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"{path!r} is not a file written by gru_fast.save: {error}") \
            from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path!r} holds a single array, not a .npz archive written by "
                         f"gru_fast.save")
    with archive:
        if HEADER_KEY not in archive.files:
            raise ValueError(f"{path!r} is a .npz archive without the {HEADER_KEY} header: "
                             f"not written by gru_fast.save")
        arrays = {}
        try:
            for name in archive.files:
                arrays[name] = archive[name]
        except ValueError as error:
            if "pickle" in str(error):
                raise _refuse_pickle(path, error) from None
            raise
    header_array = arrays.pop(HEADER_KEY)
    if header_array.dtype.kind != "U" or header_array.ndim != 0:
        raise ValueError(f"the {HEADER_KEY} header of {path!r} is not a JSON text")
    try:
        header = json.loads(str(header_array))
    except json.JSONDecodeError as error:
        raise ValueError(f"the {HEADER_KEY} header of {path!r} is not valid JSON: "
                         f"{error}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path!r} was not written by gru_fast.save")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path!r} has format version {version!r}; this gru_fast reads "
                         f"versions up to {FORMAT_VERSION} (upgrade gru_fast)")
    class_name, config = header.get("class"), header.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"the header of {path!r} has no config")
    try:
        if class_name in ("GRU", "reference.GRU", "FrozenGRULayer"):
            return _build_gru(config, arrays, class_name)
        if class_name == "FrozenGRU":
            return _build_frozen(config, arrays)
        if class_name in ("GRURegressor", "GRUClassifier"):
            return _build_estimator(class_name, config, arrays)
    except KeyError as error:
        raise ValueError(f"{path!r}: the header or arrays lack {error}") from None
    raise ValueError(f"{path!r} holds an unknown class {class_name!r}")
