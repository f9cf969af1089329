"""quantize(method='pt2e'): torchao's PT2E static int8 (X86InductorQuantizer +
torch.compile) on a real-MNIST MLP, any batch size, and a clear error without torchao.

torch.compile costs seconds a graph: the one test that runs the model compiles twice (the
first batch size, then a second size, which also checks the dynamic batch dimension).
"""

import sys

import pytest
import torch
import torch.nn as nn

from brisk.compress import quantize


def test_pt2e_matches_fp32_and_takes_any_batch_size(mnist_mlp):
    """Measured over 5 training seeds (0-4) of this MLP, calibration on 1024 training
    images: accuracy drop -0.06..+0.01 points, argmax agreement with fp32 99.91-99.98%
    (FX static: 99.66-99.76%); batches of 1, 7 and 100 agreed 100%."""
    # torchao is in the test extra (brisk[int8]): missing, this test fails, never skips
    model, (xtr, _), (xte, yte) = mnist_mlp
    q = quantize(model, "static", calibration_data=xtr[:1024], method="pt2e")
    assert model[0].weight.dtype == torch.float32  # input untouched
    with torch.no_grad():
        ref, out = model(xte), q(xte)  # 10000: the first compile
    assert out.shape == ref.shape and out.dtype == torch.float32
    agree = float((out.argmax(1) == ref.argmax(1)).float().mean())
    assert agree >= 0.998  # measured >= 0.9991
    acc_f = 100 * float((ref.argmax(1) == yte).float().mean())
    acc_q = 100 * float((out.argmax(1) == yte).float().mean())
    assert acc_f - acc_q <= 0.3
    # a batch size neither calibrated nor exported with: the graph's batch dim is dynamic
    with torch.no_grad():
        small = q(xte[:37])  # second compile
    assert small.shape == (37, 10)
    assert torch.allclose(small, out[:37], atol=1e-4)  # same int8 graph, same numbers
    q.eval()  # exported graphs refuse .eval() unless allowed: quantize allows it


def test_pt2e_without_torchao_names_the_argument_and_the_install(monkeypatch, mnist_mlp):
    model, (xtr, _), _ = mnist_mlp
    for name in [n for n in sys.modules if n == "torchao" or n.startswith("torchao.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torchao", None)  # `import torchao...` -> ImportError
    with pytest.raises(ImportError, match=r"method='pt2e'.*pip install 'torchao"):
        quantize(model, "static", calibration_data=xtr[:64], method="pt2e")
    q = quantize(model, "static", calibration_data=xtr[:64])  # the default needs no torchao
    assert q(xtr[:4]).shape == (4, 10)


def test_pt2e_argument_errors():
    m = nn.Sequential(nn.Linear(4, 4)).eval()
    x = torch.randn(8, 4)
    with pytest.raises(ValueError, match="did you mean 'pt2e'"):
        quantize(m, "static", calibration_data=x, method="pt2")
    with pytest.raises(ValueError, match="mode='static' only"):
        quantize(m, "dynamic", method="pt2e")
    with pytest.raises(ValueError, match="backend"):
        quantize(m, "static", calibration_data=x, backend="qnnpack", method="pt2e")
    with pytest.raises(ValueError, match="calibration_data"):
        quantize(m, "static", method="pt2e")
    with pytest.raises(ValueError, match="training mode"):
        quantize(m.train(), "static", calibration_data=x, method="pt2e")
