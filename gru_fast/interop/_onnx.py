"""ONNX: one standard ``GRU`` node per layer, W [D, 3H, I], R [D, 3H, H], B [D, 6H].

ONNX orders the gate rows z, r, h and stores both biases in one tensor, B = [Wb; Rb];
``linear_before_reset`` is gru_fast's ``reset_after``. :func:`to_onnx` writes a graph
node by node (one helper per piece of the graph); :func:`from_onnx` reads one GRU node at
a time into a :class:`_GRUNode`, then checks that the nodes form one gru_fast layer.
"""

from __future__ import annotations

import os
from collections import namedtuple

import numpy as np

from ._common import check_dtype, check_layer, directions, layer_state, new_layer, swap_r_z

#: Default opset of exported models: GRU-14 (with ``layout``), Slice/Reshape with
#: tensor inputs; run by every current ONNX Runtime.
ONNX_OPSET = 17
#: IR version paired with opset 17 (onnx 1.12); newer IR versions gain nothing here and
#: older runtimes refuse them.
ONNX_IR_VERSION = 8

# Keys of the ONNX model metadata that to_onnx writes and from_onnx reads back.
_META_PREFIX = "gru_fast."

# --------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------


class _GraphBuilder:
    """The nodes and initializers of a graph being written, in order."""

    def __init__(self):
        from onnx import helper, numpy_helper

        self._helper, self._numpy_helper = helper, numpy_helper
        self.nodes, self.initializers = [], []

    def constant(self, name, values, dtype=np.int64):
        """Add an initializer ``name`` holding ``values``; return its name."""
        array = np.asarray(values, dtype)
        self.initializers.append(self._numpy_helper.from_array(array, name))
        return name

    def node(self, op_type, inputs, outputs, **attributes):
        """Add a node; return the name of its first output."""
        self.nodes.append(self._helper.make_node(op_type, inputs, outputs, **attributes))
        return outputs[0]


def _gru_node_weights(state, index, suffixes, bias):
    """W [D, 3H, I], R [D, 3H, H] and B [D, 6H] (None without bias) of layer ``index``.

    ONNX rows are z, r, h: the same swap as Keras, on the rows; B = [Wb; Rb].
    """
    weight = np.stack([swap_r_z(state[f"weight_ih_l{index}{s}"]) for s in suffixes])
    recurrence = np.stack([swap_r_z(state[f"weight_hh_l{index}{s}"]) for s in suffixes])
    if not bias:
        return weight, recurrence, None
    biases = np.stack([
        np.concatenate([swap_r_z(state[f"bias_ih_l{index}{s}"]),
                        swap_r_z(state[f"bias_hh_l{index}{s}"])])
        for s in suffixes
    ])
    return weight, recurrence, biases


def _add_empty_row_mask(graph):
    """Rows with ``sequence_lens == 0``, as a [1, B, 1] bool tensor; return its name.

    ONNX Runtime returns a zero Y_h for such a row; gru_fast returns h0. With both
    optional inputs present, each layer selects initial_h for those rows (Where).
    """
    zero = graph.constant("zero_length", 0, np.int32)
    empty_rows = graph.node("Equal", ["sequence_lens", zero], ["empty_rows"])
    axes = graph.constant("empty_rows_axes", [0, 2])
    return graph.node("Unsqueeze", [empty_rows, axes], ["empty_rows_1b1"])


def _add_layer_initial_state(graph, index, num_layers, num_directions):
    """Layer ``index``'s slice [D, B, H] of the graph input initial_h; return its name."""
    if num_layers == 1:
        return "initial_h"
    starts = graph.constant(f"initial_h_start_l{index}", [index * num_directions])
    ends = graph.constant(f"initial_h_end_l{index}", [(index + 1) * num_directions])
    axes = graph.constant(f"initial_h_axes_l{index}", [0])
    return graph.node("Slice", ["initial_h", starts, ends, axes], [f"initial_h_l{index}"])


def _add_gru_layer(graph, layer, state, index, x_name, *, sequence_lens, initial_h,
                   empty_rows, merged_shape):
    """Layer ``index``: its GRU node and the layout nodes after it.

    Returns (name of the layer's output sequence, name of its final state Y_h).
    """
    num_layers = int(layer.num_layers)
    suffixes = directions(layer.bidirectional)
    weight, recurrence, bias = _gru_node_weights(state, index, suffixes, layer.bias)
    # GRU inputs: X, W, R, B, sequence_lens, initial_h ("" = absent; trailing ones dropped)
    inputs = [x_name, graph.constant(f"W_l{index}", weight, weight.dtype),
              graph.constant(f"R_l{index}", recurrence, recurrence.dtype), "", "", ""]
    if bias is not None:
        inputs[3] = graph.constant(f"B_l{index}", bias, bias.dtype)
    if sequence_lens:
        inputs[4] = "sequence_lens"
    if initial_h:
        inputs[5] = _add_layer_initial_state(graph, index, num_layers, len(suffixes))
    while inputs[-1] == "":
        inputs.pop()

    y_name = f"Y_l{index}"
    y_h_name = "Y_h" if num_layers == 1 else f"Y_h_l{index}"
    gru_y_h_name = f"{y_h_name}_gru" if empty_rows else y_h_name
    graph.node(
        "GRU",
        inputs,
        [y_name, gru_y_h_name],
        name=f"gru_l{index}",
        hidden_size=int(layer.hidden_size),
        direction="bidirectional" if len(suffixes) == 2 else "forward",
        linear_before_reset=int(bool(layer.reset_after)),
    )
    if empty_rows:
        graph.node("Where", [empty_rows, inputs[5], gru_y_h_name], [y_h_name])

    last = index == num_layers - 1
    # Y [T, D, B, H] -> [T, B, D, H] (or [B, T, D, H] for a batch-first output).
    perm = [2, 0, 1, 3] if (last and layer.batch_first) else [0, 2, 1, 3]
    transposed = graph.node("Transpose", [y_name], [f"Y_l{index}_transposed"], perm=perm)
    out_name = "Y" if last else f"X_l{index + 1}"
    graph.node("Reshape", [transposed, merged_shape], [out_name])
    return out_name, y_h_name


def _graph_signature(layer, elem_type, *, sequence_lens, initial_h):
    """The graph's inputs and outputs, with ``seq_len`` and ``batch`` dynamic."""
    from onnx import TensorProto, helper

    input_size, hidden_size = int(layer.input_size), int(layer.hidden_size)
    num_directions = len(directions(layer.bidirectional))
    states = [int(layer.num_layers) * num_directions, "batch", hidden_size]
    sequence_dims = ["batch", "seq_len"] if layer.batch_first else ["seq_len", "batch"]
    inputs = [helper.make_tensor_value_info("X", elem_type, sequence_dims + [input_size])]
    if sequence_lens:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["batch"]))
    if initial_h:
        inputs.append(helper.make_tensor_value_info("initial_h", elem_type, states))
    outputs = [
        helper.make_tensor_value_info("Y", elem_type, sequence_dims + [num_directions * hidden_size]),
        helper.make_tensor_value_info("Y_h", elem_type, states),
    ]
    return inputs, outputs


def _make_model(layer, graph, graph_inputs, graph_outputs, opset):
    """The checked ModelProto around ``graph``, with gru_fast's metadata."""
    import onnx
    from onnx import helper

    batch_first, reset_after = bool(layer.batch_first), bool(layer.reset_after)
    graph_proto = helper.make_graph(
        graph.nodes, "gru_fast_GRU", graph_inputs, graph_outputs, initializer=graph.initializers
    )
    model = helper.make_model(
        graph_proto,
        opset_imports=[helper.make_opsetid("", int(opset))],
        ir_version=ONNX_IR_VERSION,
        producer_name="gru_fast",
        doc_string=(
            f"gru_fast GRU: input_size={int(layer.input_size)}, "
            f"hidden_size={int(layer.hidden_size)}, num_layers={int(layer.num_layers)}, "
            f"bidirectional={bool(layer.bidirectional)}, batch_first={batch_first}, "
            f"reset_after={reset_after}"
        ),
    )
    helper.set_model_props(
        model,
        {
            _META_PREFIX + "batch_first": str(int(batch_first)),
            _META_PREFIX + "reset_after": str(int(reset_after)),
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def to_onnx(layer, path=None, *, sequence_lens=False, initial_h=False, opset=ONNX_OPSET):
    """Export a gru_fast GRU as an ONNX model made of standard GRU nodes.

    The graph has one ``GRU`` node per layer (``direction="bidirectional"`` for a
    bidirectional layer, ``linear_before_reset`` = ``layer.reset_after``), with the
    weights as initializers ``W_l{k}``, ``R_l{k}``, ``B_l{k}``. Between layers, each
    node's ``Y`` [T, D, B, H] becomes [T, B, D*H] by Transpose + Reshape, exactly as
    PyTorch's exporter does; ``batch_first`` layers get a Transpose on the way in and
    out. ``T`` and ``B`` are dynamic.

    Graph inputs and outputs (shapes as in :meth:`GRU.forward`):

    * ``X``: (T, B, I), or (B, T, I) when ``layer.batch_first``;
    * ``sequence_lens`` (only if requested): int32 (B,), the ``lengths`` of forward;
    * ``initial_h`` (only if requested): (num_layers*D, B, H), forward's ``h0``;
    * ``Y``: (T, B, D*H), or (B, T, D*H) when batch_first; zero at padded steps;
    * ``Y_h``: (num_layers*D, B, H), forward's ``h_n``.

    ONNX Runtime's GRU runs the reverse direction of row b from ``len_b - 1`` down to 0
    and zeroes padded outputs, which is gru_fast's semantics, so exported models with
    ``sequence_lens`` match ``forward(x, lengths=...)``. For a row of length 0 ONNX
    Runtime's GRU returns a zero ``Y_h`` where gru_fast returns ``h0``; when both
    optional inputs are present the graph selects ``initial_h`` for such rows (Equal +
    Where) so that the model still matches. ONNX Runtime 1.32 implements GRU in float
    only: a float64 layer exports to a valid model that it cannot run.

    Parameters
    ----------
    layer : GRU
        The layer to export.
    path : str or os.PathLike, optional
        If given, the model is also saved there.
    sequence_lens : bool, default False
        Add the graph input ``sequence_lens``.
    initial_h : bool, default False
        Add the graph input ``initial_h``; without it the initial state is zero.
    opset : int, default 17
        The ai.onnx opset to declare (at least 14).

    Returns
    -------
    onnx.ModelProto
        The checked model. Its metadata (``gru_fast.*`` keys) records the layer's
        configuration for :func:`from_onnx`.

    Examples
    --------
    >>> model = interop.to_onnx(layer, "gru.onnx", sequence_lens=True)  # doctest: +SKIP
    >>> import onnxruntime  # doctest: +SKIP
    >>> session = onnxruntime.InferenceSession("gru.onnx")  # doctest: +SKIP
    >>> y, h_n = session.run(None, {"X": x, "sequence_lens": lengths})  # doctest: +SKIP
    """
    import onnx
    from onnx import TensorProto

    dtype = check_layer(layer)
    if opset < 14:
        raise ValueError(f"opset={opset}: exported models need opset 14 or newer")
    elem_type = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    state = layer_state(layer)
    num_layers = int(layer.num_layers)
    num_directions = len(directions(layer.bidirectional))

    graph = _GraphBuilder()
    # [T, B, D*H] from a GRU's Y [T, D, B, H] (0 = keep that dimension)
    merged_shape = graph.constant(
        "shape_merge_directions", [0, 0, num_directions * int(layer.hidden_size)]
    )
    current = "X"
    if layer.batch_first:
        current = graph.node("Transpose", ["X"], ["X_time_major"], perm=[1, 0, 2])
    empty_rows = _add_empty_row_mask(graph) if (sequence_lens and initial_h) else None

    final_states = []
    for index in range(num_layers):
        current, y_h_name = _add_gru_layer(
            graph, layer, state, index, current, sequence_lens=sequence_lens,
            initial_h=initial_h, empty_rows=empty_rows, merged_shape=merged_shape,
        )
        final_states.append(y_h_name)
    if num_layers > 1:
        graph.node("Concat", final_states, ["Y_h"], axis=0)

    graph_inputs, graph_outputs = _graph_signature(
        layer, elem_type, sequence_lens=sequence_lens, initial_h=initial_h
    )
    model = _make_model(layer, graph, graph_inputs, graph_outputs, opset)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model


# --------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------

# Nodes that may sit between a graph input / GRU output and the next GRU's X without
# changing which numbers the GRU sees (only their layout).
_ONNX_GLUE_OPS = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten"}
_ONNX_DEFAULT_ACTIVATIONS = ("sigmoid", "tanh")

#: One GRU node of the model being imported, read and checked on its own.
_GRUNode = namedtuple(
    "_GRUNode",
    "num_directions reset_after hidden_size input_size layout dtype weight recurrence bias "
    "transposes",
)


def _load_model(model_or_path):
    """The ModelProto given, or loaded from a path."""
    import onnx

    if isinstance(model_or_path, (str, bytes, os.PathLike)):
        return onnx.load(os.fspath(model_or_path))
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    raise TypeError(
        f"from_onnx expects an onnx.ModelProto or a path, got {type(model_or_path).__name__}"
    )


def _onnx_constants(graph):
    """Arrays of the graph's initializers and Constant nodes, by output name."""
    from onnx import numpy_helper

    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attribute in node.attribute:
                if attribute.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attribute.t)
    return constants


def _onnx_trace_input(name, producers):
    """Walk back from ``name`` through layout-only nodes.

    Returns (origin_node_or_None, origin_name, transposes), where ``transposes`` lists the
    ``perm`` of every Transpose passed, nearest the origin first.
    """
    transposes = []
    while name in producers and producers[name].op_type in _ONNX_GLUE_OPS:
        node = producers[name]
        if node.op_type == "Transpose":
            for attribute in node.attribute:
                if attribute.name == "perm":
                    transposes.insert(0, list(attribute.ints))
        name = node.input[0]
    return producers.get(name), name, transposes


def _as_text(value):
    """An ONNX string attribute (bytes) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _node_num_directions(attributes, where):
    """1 or 2 from the node's ``direction``; a reverse-only node is refused."""
    direction = _as_text(attributes.get("direction", b"forward"))
    if direction == "reverse":
        raise ValueError(
            f"{where} has direction='reverse'; a gru_fast GRU layer runs "
            "forward or bidirectional (for one reverse direction use "
            "gru_fast.gru_forward(..., reverse=True) with this node's weights)"
        )
    if direction not in ("forward", "bidirectional"):
        raise ValueError(f"{where} has unknown direction={direction!r}")
    return 2 if direction == "bidirectional" else 1


def _check_node_math(attributes, num_directions, where):
    """Refuse activations other than Sigmoid/Tanh and any ``clip``."""
    activations = attributes.get("activations")
    if activations is not None:
        names = tuple(_as_text(a).lower() for a in activations)
        if names != _ONNX_DEFAULT_ACTIVATIONS * num_directions:
            raise ValueError(
                f"{where} uses activations {list(names)}; gru_fast computes "
                "Sigmoid and Tanh only"
            )
    if "clip" in attributes:
        raise ValueError(
            f"{where} clips the gate inputs (clip={attributes['clip']}); gru_fast does not clip"
        )


def _node_weights(node, constants, where):
    """The node's W, R and B arrays (B None when absent), read from constants."""
    names = list(node.input) + [""] * (4 - len(node.input))
    arrays = []
    for role, name in zip(("W", "R", "B"), names[1:4]):
        if name == "":
            arrays.append(None)
            continue
        if name not in constants:
            raise ValueError(
                f"{where}: its {role} input {name!r} is not an initializer "
                "or Constant; from_onnx reads weights from constants only"
            )
        arrays.append(constants[name])
    if arrays[0] is None or arrays[1] is None:
        raise ValueError(f"{where} lacks its W or R input")
    return arrays


def _check_weight_shapes(weight, recurrence, bias, num_directions, attributes, where):
    """Check W, R and B against each other and ``hidden_size``; return (H, dtype)."""
    if recurrence.ndim != 3 or recurrence.shape[0] != num_directions:
        raise ValueError(
            f"{where}: R must be [{num_directions}, 3H, H], got {recurrence.shape}"
        )
    hidden_size = recurrence.shape[2]
    if int(attributes.get("hidden_size", hidden_size)) != hidden_size:
        raise ValueError(
            f"{where}: hidden_size={attributes['hidden_size']} but R has "
            f"shape {recurrence.shape}"
        )
    if recurrence.shape[1] != 3 * hidden_size:
        raise ValueError(
            f"{where}: R must be [{num_directions}, {3 * hidden_size}, "
            f"{hidden_size}], got {recurrence.shape}"
        )
    if weight.ndim != 3 or weight.shape[:2] != (num_directions, 3 * hidden_size):
        raise ValueError(
            f"{where}: W must be [{num_directions}, {3 * hidden_size}, I], got {weight.shape}"
        )
    if bias is not None and bias.shape != (num_directions, 6 * hidden_size):
        raise ValueError(
            f"{where}: B must be [{num_directions}, {6 * hidden_size}], got {bias.shape}"
        )
    dtype = check_dtype(weight.dtype, where)
    for array in (recurrence, bias):
        if array is not None and array.dtype != dtype:
            raise TypeError(f"{where}: W is {dtype} but R or B is {array.dtype}")
    return hidden_size, dtype


def _node_transposes(index, node, gru_nodes, producers, where):
    """Check what node ``index`` reads; return the Transpose perms on the way.

    The first node must read a graph input, every later one the Y of the node before,
    each through layout-only nodes.
    """
    origin, origin_name, transposes = _onnx_trace_input(node.input[0], producers)
    if index == 0:
        if origin is not None:
            raise ValueError(
                f"{where} reads {origin_name!r}, the output of a "
                f"{origin.op_type} node; from_onnx expects the first GRU to read a "
                "graph input (through layout-only nodes)"
            )
    elif origin is not gru_nodes[index - 1] or origin_name != origin.output[0]:
        raise ValueError(
            f"{where} does not read the Y output of GRU node {index - 1}; "
            "from_onnx handles plain stacks of GRU nodes only"
        )
    return transposes


def _read_gru_node(index, gru_nodes, constants, producers):
    """GRU node ``index`` of the stack, checked on its own, as a :class:`_GRUNode`."""
    from onnx import helper

    node = gru_nodes[index]
    where = f"GRU node {index} ({node.name or 'unnamed'})"
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    num_directions = _node_num_directions(attributes, where)
    _check_node_math(attributes, num_directions, where)
    weight, recurrence, bias = _node_weights(node, constants, where)
    hidden_size, dtype = _check_weight_shapes(
        weight, recurrence, bias, num_directions, attributes, where
    )
    return _GRUNode(
        num_directions=num_directions,
        reset_after=bool(attributes.get("linear_before_reset", 0)),
        hidden_size=hidden_size,
        input_size=weight.shape[2],
        layout=int(attributes.get("layout", 0)),
        dtype=dtype,
        weight=weight,
        recurrence=recurrence,
        bias=bias,
        transposes=_node_transposes(index, node, gru_nodes, producers, where),
    )


def _check_stack(nodes):
    """Check that the nodes agree and chain: one gru_fast layer of len(nodes) layers."""
    first = nodes[0]
    for index, node in enumerate(nodes):
        for key in ("num_directions", "reset_after", "hidden_size", "dtype", "layout"):
            if getattr(node, key) != getattr(first, key):
                raise ValueError(
                    f"GRU nodes 0 and {index} differ in {key} ({getattr(first, key)} vs "
                    f"{getattr(node, key)}); a gru_fast GRU needs them equal"
                )
        expected_input = first.num_directions * first.hidden_size
        if index > 0 and node.input_size != expected_input:
            raise ValueError(
                f"GRU node {index} has input size {node.input_size}; stacked on "
                f"node {index - 1} it must be {expected_input}"
            )


def _read_batch_first(model, first):
    """batch_first from to_onnx's metadata, else from the first node's layout or input."""
    properties = {p.key: p.value for p in model.metadata_props}
    if _META_PREFIX + "batch_first" in properties:
        return properties[_META_PREFIX + "batch_first"] == "1"
    return first.layout == 1 or [1, 0, 2] in first.transposes


def _state_from_nodes(nodes):
    """gru_fast parameters (rows r, z, n) of the stack of nodes."""
    first = nodes[0]
    hidden_size = first.hidden_size
    suffixes = directions(first.num_directions == 2)
    has_bias = any(node.bias is not None for node in nodes)
    state = {}
    for index, node in enumerate(nodes):
        bias = node.bias
        if has_bias and bias is None:  # ONNX: a missing B is zero
            bias = np.zeros((len(suffixes), 6 * hidden_size), first.dtype)
        for direction, suffix in enumerate(suffixes):
            state[f"weight_ih_l{index}{suffix}"] = swap_r_z(node.weight[direction])
            state[f"weight_hh_l{index}{suffix}"] = swap_r_z(node.recurrence[direction])
            if has_bias:
                state[f"bias_ih_l{index}{suffix}"] = swap_r_z(bias[direction, : 3 * hidden_size])
                state[f"bias_hh_l{index}{suffix}"] = swap_r_z(bias[direction, 3 * hidden_size :])
    return state, has_bias


def from_onnx(model_or_path, *, batch_first=None):
    """Make a gru_fast GRU from an ONNX model made of GRU nodes.

    Works for models from :func:`to_onnx` and from other exporters that lay a GRU out
    the same way, e.g. ``torch.onnx.export`` of a ``torch.nn.GRU`` (the TorchScript
    exporter, ``dynamo=False``). The GRU nodes, in graph order, become the layers; each
    must read the previous one's ``Y`` through layout-only nodes (Transpose, Reshape,
    Squeeze, ...), and the weights ``W``, ``R`` and ``B`` must be initializers or
    Constant nodes.

    Parameters
    ----------
    model_or_path : onnx.ModelProto, str or os.PathLike
        The model or the path of a ``.onnx`` file.
    batch_first : bool, optional
        ``batch_first`` of the returned layer. By default it is read from the metadata
        :func:`to_onnx` writes; otherwise True if the graph input reaches the first GRU
        through a ``Transpose(perm=[1, 0, 2])`` (PyTorch's batch_first export) or the
        node has ``layout=1``, else False.

    Returns
    -------
    GRU
        A new layer; ``reset_after`` is the nodes' ``linear_before_reset``.

    Raises
    ------
    ValueError
        If the model has no GRU node, the nodes disagree (direction,
        ``linear_before_reset``, hidden size), a node is ``direction="reverse"`` (a
        gru_fast GRU layer has no reverse-only form; use
        ``gru_fast.gru_forward(..., reverse=True)``), uses non-default activations or
        ``clip``, is not fed by the previous node, or its weights are not constants.
    TypeError
        If the weights are not float32 or float64.

    Examples
    --------
    >>> layer = interop.from_onnx("gru.onnx")  # doctest: +SKIP
    """
    model = _load_model(model_or_path)
    graph = model.graph
    gru_nodes = [n for n in graph.node if n.op_type == "GRU" and n.domain in ("", "ai.onnx")]
    if not gru_nodes:
        ops = sorted({n.op_type for n in graph.node})
        raise ValueError(f"the ONNX model has no GRU node (its ops: {ops})")
    constants = _onnx_constants(graph)
    producers = {output: node for node in graph.node for output in node.output}
    nodes = [_read_gru_node(index, gru_nodes, constants, producers)
             for index in range(len(gru_nodes))]
    _check_stack(nodes)
    first = nodes[0]
    if batch_first is None:
        batch_first = _read_batch_first(model, first)
    state, has_bias = _state_from_nodes(nodes)
    return new_layer(
        state,
        input_size=first.input_size,
        hidden_size=first.hidden_size,
        num_layers=len(nodes),
        bias=has_bias,
        batch_first=bool(batch_first),
        bidirectional=first.num_directions == 2,
        reset_after=first.reset_after,
        dtype=first.dtype,
    )
