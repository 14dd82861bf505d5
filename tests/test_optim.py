"""gru_fast.optim: update rules against PyTorch step for step, clipping, bad input."""

import numpy as np
import pytest

from gru_fast import optim

SHAPES = {"weight": (6, 4), "bias": (6,)}
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.003, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.05)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, betas=(0.5, 0.9), weight_decay=0.3)),
]


def _problem(dtype, steps=6, seed=0):
    rng = np.random.default_rng(seed)
    params = {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}
    grads = [{name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}
             for _ in range(steps)]
    return params, grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,settings", CONFIGS)
def test_matches_torch_step_for_step(name, settings, dtype):
    torch = pytest.importorskip("torch")
    params, grads = _problem(dtype)
    tensors = {key: torch.tensor(value.copy(), requires_grad=True)
               for key, value in params.items()}
    ours = getattr(optim, name)(params, **settings)
    theirs = getattr(torch.optim, name)(list(tensors.values()), **settings)
    for step_grads in grads:
        ours.step(step_grads)
        for key, tensor in tensors.items():
            tensor.grad = torch.tensor(step_grads[key])
        theirs.step()
        for key, tensor in tensors.items():
            np.testing.assert_allclose(params[key], tensor.detach().numpy(),
                                       rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])
    assert all(value.dtype == dtype for value in params.values())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,settings", [c for c in CONFIGS if c[0] != "SGD"])
def test_one_pass_adam_gives_the_numpy_codes_bits(monkeypatch, name, settings, dtype):
    """src/_optim_kernels.pyx against optim.Adam's NumPy code: the same bits, step by step;
    arrays it cannot update in place (not contiguous) take the NumPy code."""
    import types

    kernels = optim._optim_kernels
    assert kernels is not None  # built with the package
    fused_calls = []

    def counted(param, *args):
        fused_calls.append(param.size)
        return kernels.adam_update(param, *args)

    monkeypatch.setattr(optim, "_optim_kernels", types.SimpleNamespace(adam_update=counted))
    runs = []
    for fused in (True, False):
        monkeypatch.setattr(optim, "USE_FUSED_UPDATES", fused)
        params, grads = _problem(dtype, steps=8)
        params["strided"] = np.ones((6, 8), dtype=dtype)[:, ::2]  # not contiguous
        optimizer = getattr(optim, name)(params, **settings)
        for step_grads in grads:
            step_grads["strided"] = np.full((6, 4), 0.5, dtype=dtype)
            optimizer.step(step_grads)
        runs.append(params)
    # weight and bias in one pass at every step (the strided one never)
    assert fused_calls == [24, 6] * 8
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key], err_msg=key)
    assert not np.array_equal(runs[0]["weight"], _problem(dtype, steps=8)[0]["weight"])


def test_updates_in_place_and_leaves_grads_alone():
    params, grads = _problem(np.float64)
    originals = {key: value for key, value in params.items()}
    grads_before = {key: value.copy() for key, value in grads[0].items()}
    optimizer = optim.Adam(params, lr=0.1)
    optimizer.step(grads[0])
    for key in params:
        assert params[key] is originals[key]
        np.testing.assert_array_equal(grads[0][key], grads_before[key])


def test_sgd_descends_a_quadratic_to_its_minimum():
    # f(p) = 0.5 |p - c|^2, gradient p - c: every optimizer must reach c.
    target = np.array([1.0, -2.0, 3.0])
    for make in (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
                 lambda p: optim.Adam(p, lr=0.1), lambda p: optim.AdamW(p, lr=0.1,
                                                                       weight_decay=0.0)):
        params = {"p": np.zeros(3)}
        optimizer = make(params)
        for _ in range(500):
            optimizer.step({"p": params["p"] - target})
        np.testing.assert_allclose(params["p"], target, atol=1e-3)


@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(max_norm):
    torch = pytest.importorskip("torch")
    _, grads = _problem(np.float64)
    grads = grads[0]
    tensors = [torch.zeros(value.shape, dtype=torch.float64, requires_grad=True)
               for value in grads.values()]
    for tensor, value in zip(tensors, grads.values()):
        tensor.grad = torch.tensor(value.copy())
    expected_norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    norm = optim.clip_grad_norm(grads, max_norm)
    assert norm == pytest.approx(float(expected_norm), rel=1e-12)
    for tensor, value in zip(tensors, grads.values()):
        np.testing.assert_allclose(value, tensor.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_without_torch():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    assert optim.clip_grad_norm(grads, 1.0) == pytest.approx(5.0)
    total = np.sqrt(np.sum(grads["a"] ** 2) + np.sum(grads["b"] ** 2))
    assert total == pytest.approx(1.0, rel=1e-5)
    assert np.isnan(optim.clip_grad_norm({"a": np.array([np.nan])}, 1.0))


@pytest.mark.parametrize("call,error,match", [
    (lambda p: optim.Adam(p, lr=-1.0), ValueError, "lr"),
    (lambda p: optim.Adam(p, lr="fast"), TypeError, "lr"),
    (lambda p: optim.Adam(p, betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
    (lambda p: optim.Adam(p, betas=0.9), TypeError, "betas"),
    (lambda p: optim.SGD(p, momentum=0.0, nesterov=True), ValueError, "nesterov"),
    (lambda p: optim.SGD(p, weight_decay=float("nan")), ValueError, "weight_decay"),
    (lambda p: optim.SGD([1.0]), TypeError, "params"),
    (lambda p: optim.SGD({"w": [1.0]}), TypeError, "params"),
    (lambda p: optim.Adam(p).step({"weight": np.zeros((6, 4))}), ValueError, "missing"),
    (lambda p: optim.Adam(p).step({"weight": np.zeros((6, 3)), "bias": np.zeros(6)}),
     ValueError, "shape"),
    (lambda p: optim.clip_grad_norm({"w": np.ones(2)}, 0.0), ValueError, "max_norm"),
])
def test_bad_arguments(call, error, match):
    params, _ = _problem(np.float64)
    with pytest.raises(error, match=match):
        call(params)


def test_read_only_params_refused():
    weight = np.zeros(3)
    weight.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        optim.SGD({"w": weight})
