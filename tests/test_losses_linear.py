"""Losses and the linear head: gradients against central finite differences, and torch."""

import numpy as np
import pytest

from gru_fast.linear import Linear
from gru_fast.losses import cross_entropy_with_logits, mean_squared_error, softmax

from _helpers import numeric_gradient


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_gradient_matches_finite_differences(reduction):
    rng = np.random.default_rng(0)
    prediction, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    value, grad = mean_squared_error(prediction, target, reduction)
    numeric = numeric_gradient(lambda: mean_squared_error(prediction, target, reduction)[0],
                                prediction)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9)
    per_sample = ((prediction - target) ** 2).mean(axis=1)
    assert value == pytest.approx(per_sample.mean() if reduction == "mean"
                                  else per_sample.sum())


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_gradient_matches_finite_differences(reduction):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((6, 4)) * 3
    labels = rng.integers(0, 4, 6)
    _, grad = cross_entropy_with_logits(logits, labels, reduction)
    numeric = numeric_gradient(
        lambda: cross_entropy_with_logits(logits, labels, reduction)[0], logits)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_losses_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    prediction, target = rng.standard_normal((7, 2)), rng.standard_normal((7, 2))
    expected = torch.nn.MSELoss()(torch.tensor(prediction), torch.tensor(target))
    assert mean_squared_error(prediction, target)[0] == pytest.approx(float(expected))
    logits, labels = rng.standard_normal((7, 3)) * 10, rng.integers(0, 3, 7)
    expected = torch.nn.CrossEntropyLoss()(torch.tensor(logits), torch.tensor(labels))
    assert cross_entropy_with_logits(logits, labels)[0] == pytest.approx(float(expected))


def test_cross_entropy_and_softmax_are_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [-1e4, 1e4, 0.0]], dtype=np.float32)
    value, grad = cross_entropy_with_logits(logits, np.array([0, 1]))
    assert np.isfinite(value) and value == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.isfinite(grad)) and grad.dtype == np.float32
    np.testing.assert_allclose(softmax(logits).sum(axis=1), 1.0, rtol=1e-6)


def test_loss_arguments_are_not_modified():
    prediction, target = np.ones((2, 2)), np.zeros((2, 2))
    mean_squared_error(prediction, target)
    logits = np.ones((2, 3))
    cross_entropy_with_logits(logits, np.array([0, 2]))
    assert np.all(prediction == 1) and np.all(target == 0) and np.all(logits == 1)


@pytest.mark.parametrize("call,error", [
    (lambda: mean_squared_error(np.ones((2, 2)), np.ones((2, 3))), ValueError),
    (lambda: mean_squared_error(np.ones((2, 2)), np.ones((2, 2)), "max"), ValueError),
    (lambda: cross_entropy_with_logits(np.ones((2, 2)), np.array([0, 2])), ValueError),
    (lambda: cross_entropy_with_logits(np.ones((2, 2)), np.array([0.0, 1.0])), TypeError),
    (lambda: cross_entropy_with_logits(np.ones((2, 2)), np.array([0])), ValueError),
])
def test_loss_bad_input(call, error):
    with pytest.raises(error):
        call()


def test_linear_backward_matches_finite_differences():
    rng = np.random.default_rng(3)
    layer = Linear(5, 3, dtype=np.float64, seed=0)
    x = rng.standard_normal((4, 5))
    d_out = rng.standard_normal((4, 3))

    def loss():
        return float(np.sum(layer.forward(x) * d_out))

    dx, grads = layer.backward(x, d_out)
    np.testing.assert_allclose(dx, numeric_gradient(loss, x), rtol=1e-7, atol=1e-9)
    for name in ("weight", "bias"):
        np.testing.assert_allclose(grads[name], numeric_gradient(loss, layer.params[name]),
                                   rtol=1e-7, atol=1e-9)


def test_linear_matches_torch_and_checks_input():
    torch = pytest.importorskip("torch")
    layer = Linear(4, 2, dtype=np.float32, seed=1)
    module = torch.nn.Linear(4, 2)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(layer.params["weight"]))
        module.bias.copy_(torch.tensor(layer.params["bias"]))
    x = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(layer(x), module(torch.tensor(x)).detach().numpy(), rtol=1e-6)
    with pytest.raises(TypeError, match="float32"):
        layer(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        layer(x[:, :3])
    with pytest.raises(ValueError, match="out_features"):
        Linear(4, 0)
