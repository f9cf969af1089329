"""Each optimizer spec equals a float64 NumPy reference of the published update rule.

The references are written from the algorithms documented on each torch.optim class
(Robbins-Monro SGD, Polyak/Nesterov momentum, Kingma & Ba Adam, Loshchilov & Hutter
AdamW, Hinton RMSprop, Duchi et al. Adagrad, Zeiler Adadelta, Dozat NAdam), never by
calling torch.optim. Weight decay goes to the weight matrix only, as the specs' default
parameter groups exempt biases.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from brisk.optim import registry
from brisk.optim.registry import SGD, Adadelta, Adagrad, Adam, AdamW, Momentum, Nadam, RMSprop

STEPS = 6
_rng = np.random.default_rng(0)
X = _rng.normal(size=(16, 5))
Y = _rng.normal(size=(16, 3))
W0 = _rng.normal(size=(3, 5)) * 0.5
B0 = _rng.normal(size=3) * 0.1


def _grads(w, b):
    """Gradient of mean((X w^T + b - Y)^2) with respect to w and b."""
    r = X @ w.T + b - Y
    c = 2.0 / r.size
    return c * r.T @ X, c * r.sum(axis=0)


def _numpy_run(update, weight_decay):
    params = {"w": W0.copy(), "b": B0.copy()}
    states = {"w": {}, "b": {}}
    for t in range(1, STEPS + 1):
        gw, gb = _grads(params["w"], params["b"])
        for k, g in (("w", gw), ("b", gb)):
            wd = weight_decay if k == "w" else 0.0  # biases are not decayed
            params[k] = update(params[k], g, states[k], t, wd)
    return params["w"], params["b"]


def _torch_run(spec):
    model = nn.Linear(5, 3).double()
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(W0))
        model.bias.copy_(torch.from_numpy(B0))
    opt = spec.build(model)
    xt, yt = torch.from_numpy(X), torch.from_numpy(Y)
    for _ in range(STEPS):
        opt.zero_grad()
        ((model(xt) - yt) ** 2).mean().backward()
        opt.step()
    return model.weight.detach().numpy(), model.bias.detach().numpy()


# ----------------------------------------------------------------------------- references


def ref_sgd(lr, momentum=0.0, nesterov=False):
    def update(th, g, s, t, wd):
        g = g + wd * th
        if momentum:
            s["buf"] = g.copy() if t == 1 else momentum * s["buf"] + g
            g = g + momentum * s["buf"] if nesterov else s["buf"]
        return th - lr * g

    return update


def ref_adam(lr, b1, b2, eps, amsgrad=False, decoupled=False):
    def update(th, g, s, t, wd):
        if decoupled:
            th = th * (1 - lr * wd)
        else:
            g = g + wd * th
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        v = s["v"]
        if amsgrad:
            s["vmax"] = np.maximum(s.get("vmax", 0.0), v)
            v = s["vmax"]
        m_hat = s["m"] / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        return th - lr * m_hat / (np.sqrt(v_hat) + eps)

    return update


def ref_rmsprop(lr, alpha, eps, momentum=0.0, centered=False):
    def update(th, g, s, t, wd):
        g = g + wd * th
        s["v"] = alpha * s.get("v", 0.0) + (1 - alpha) * g * g
        v = s["v"]
        if centered:
            s["g_avg"] = alpha * s.get("g_avg", 0.0) + (1 - alpha) * g
            v = v - s["g_avg"] ** 2
        denom = np.sqrt(v) + eps
        if momentum:
            s["buf"] = momentum * s.get("buf", 0.0) + g / denom
            return th - lr * s["buf"]
        return th - lr * g / denom

    return update


def ref_adagrad(lr, init, eps):
    def update(th, g, s, t, wd):
        g = g + wd * th
        s["sum"] = s.get("sum", init) + g * g
        return th - lr * g / (np.sqrt(s["sum"]) + eps)

    return update


def ref_adadelta(lr, rho, eps):
    def update(th, g, s, t, wd):
        g = g + wd * th
        s["v"] = rho * s.get("v", 0.0) + (1 - rho) * g * g
        dx = np.sqrt(s.get("u", 0.0) + eps) / np.sqrt(s["v"] + eps) * g
        s["u"] = rho * s.get("u", 0.0) + (1 - rho) * dx * dx
        return th - lr * dx

    return update


def ref_nadam(lr, b1, b2, eps, psi):
    def update(th, g, s, t, wd):
        g = g + wd * th
        mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        s["prod"] = s.get("prod", 1.0) * mu
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        denom = np.sqrt(s["v"] / (1 - b2**t)) + eps
        th = th - lr * (1 - mu) / (1 - s["prod"]) * g / denom
        return th - lr * mu_next / (1 - s["prod"] * mu_next) * s["m"] / denom

    return update


CASES = {
    "sgd": (SGD(learning_rate=0.1), ref_sgd(0.1), 0.0),
    "sgd_wd": (SGD(learning_rate=0.1, weight_decay=0.1), ref_sgd(0.1), 0.1),
    "momentum": (Momentum(learning_rate=0.05), ref_sgd(0.05, 0.9), 0.0),
    "nesterov": (
        SGD(learning_rate=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
        ref_sgd(0.05, 0.8, nesterov=True),
        0.01,
    ),
    "adam": (Adam(learning_rate=0.05), ref_adam(0.05, 0.9, 0.999, 1e-7), 0.0),
    "adam_l2_amsgrad": (
        Adam(learning_rate=0.05, beta_1=0.8, beta_2=0.99, amsgrad=True, weight_decay=0.05),
        ref_adam(0.05, 0.8, 0.99, 1e-7, amsgrad=True),
        0.05,
    ),
    "adamw": (
        AdamW(learning_rate=0.05, weight_decay=0.2),
        ref_adam(0.05, 0.9, 0.999, 1e-7, decoupled=True),
        0.2,
    ),
    "rmsprop": (RMSprop(learning_rate=0.01), ref_rmsprop(0.01, 0.9, 1e-7), 0.0),
    "rmsprop_momentum": (
        RMSprop(learning_rate=0.01, momentum=0.9, weight_decay=0.01),
        ref_rmsprop(0.01, 0.9, 1e-7, momentum=0.9),
        0.01,
    ),
    "rmsprop_centered": (
        RMSprop(learning_rate=0.01, rho=0.8, centered=True, momentum=0.5),
        ref_rmsprop(0.01, 0.8, 1e-7, momentum=0.5, centered=True),
        0.0,
    ),
    "adagrad": (Adagrad(learning_rate=0.1), ref_adagrad(0.1, 0.1, 1e-7), 0.0),
    "adagrad_wd": (
        Adagrad(learning_rate=0.1, initial_accumulator_value=0.0, weight_decay=0.1),
        ref_adagrad(0.1, 0.0, 1e-7),
        0.1,
    ),
    "adadelta": (Adadelta(learning_rate=1.0), ref_adadelta(1.0, 0.95, 1e-7), 0.0),
    "nadam": (Nadam(learning_rate=0.05), ref_nadam(0.05, 0.9, 0.999, 1e-7, 4e-3), 0.0),
    "nadam_keras_schedule": (
        Nadam(learning_rate=0.05, momentum_decay=1.0, weight_decay=0.01),
        ref_nadam(0.05, 0.9, 0.999, 1e-7, 1.0),
        0.01,
    ),
}


@pytest.mark.parametrize("impl", ["auto", "foreach", "forloop"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_float64_reference(case, impl, monkeypatch):
    spec, update, wd = CASES[case]
    if impl != "auto":  # auto = fused for SGD/Adam/AdamW/Adagrad on CPU
        monkeypatch.setattr(
            registry, "_impl_kwargs", lambda cls, dev, groups=None: {"foreach": impl == "foreach"}
        )
    w, b = _torch_run(spec)
    w_ref, b_ref = _numpy_run(update, wd)
    assert np.abs(w - W0).max() > 1e-3  # the parameters did move
    assert np.abs(w - w_ref).max() < 1e-6
    assert np.abs(b - b_ref).max() < 1e-6


def test_reference_detects_a_wrong_rule():
    """The comparison can fail: Adam without bias correction is far from torch's Adam."""

    def no_bias_correction(th, g, s, t, wd):
        s["m"] = 0.9 * s.get("m", 0.0) + 0.1 * g
        s["v"] = 0.999 * s.get("v", 0.0) + 0.001 * g * g
        return th - 0.05 * s["m"] / (np.sqrt(s["v"]) + 1e-7)

    w, _ = _torch_run(Adam(learning_rate=0.05))
    w_ref, _ = _numpy_run(no_bias_correction, 0.0)
    assert np.abs(w - w_ref).max() > 1e-3
