"""Deep Compression file: exact round trip, sizes, Huffman coder, weight sharing."""

import io
import os

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from brisk.compress import (
    copy_model,
    kmeans_1d,
    load,
    make_permanent,
    prune,
    save,
    share_weights,
    size_report,
)
from brisk.compress.export import _huffman_decode, _huffman_encode, _huffman_lengths


def lenet(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 12, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(12 * 4 * 4, 100), nn.ReLU(), nn.Linear(100, 10),
    )  # fmt: skip


def pruned_lenet(seed=0):
    model = lenet(seed)
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    prune(model, amount=0.9, scope="global")
    return make_permanent(model).eval()


X = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"entropy": "lzma"},
        {"entropy": "zlib"},
        {"entropy": "none"},
        {"sparse": False},
        {"bits": 3, "conv_bits": 4},
    ],
)
def test_round_trip_equals_shared_weight_model(tmp_path, kw):
    model = pruned_lenet()
    path = tmp_path / "m.brisk"
    info = save(model, path, **kw)
    assert info["bytes"] == os.path.getsize(path)
    assert os.listdir(tmp_path) == ["m.brisk"]  # the atomic write left no temp file
    shared = make_permanent(
        share_weights(copy_model(model), bits=kw.get("bits", 5), conv_bits=kw.get("conv_bits", 8))
    )
    loaded = load(path, model=lenet(seed=99).eval())
    sd_shared, sd_loaded = shared.state_dict(), loaded.state_dict()
    assert sorted(sd_shared) == sorted(sd_loaded)
    for k, a in sd_shared.items():
        assert torch.equal(a, sd_loaded[k]), k
    with torch.no_grad():
        assert torch.equal(loaded(X), shared(X))  # identical predictions, bit for bit
    for k, w in model.state_dict().items():  # zeros preserved exactly
        if w.dim() >= 2:
            assert torch.equal(loaded.state_dict()[k] == 0, w == 0)
    nbits = {"bits": kw.get("bits", 5), "conv": kw.get("conv_bits", 8)}
    assert len(torch.unique(loaded[8].weight)) <= 2 ** nbits["bits"] + 1
    assert len(torch.unique(loaded[0].weight)) <= 2 ** nbits["conv"] + 1


def test_saving_a_shared_model_is_lossless_and_codebook_trains(tmp_path):
    model = share_weights(pruned_lenet(), bits=4, conv_bits=6)
    zeros = model[8].weight == 0
    cb = model[8].parametrizations.weight[0].codebook
    assert cb.numel() == 16
    # Gradient of a centroid = sum of the gradients of its weights (Han et al. 2016).
    with parametrize.cached():  # one weight tensor for the forward and for .grad
        w = model[8].weight
        w.retain_grad()
        model(X).square().mean().backward()
    idx = model[8].parametrizations.weight[0].index
    manual = torch.zeros(17).index_add_(0, idx.flatten(), w.grad.flatten())[1:]
    assert torch.allclose(cb.grad, manual, rtol=1e-5, atol=1e-8)
    opt = torch.optim.SGD([p for n, p in model.named_parameters() if "codebook" in n], lr=0.5)
    before = cb.detach().clone()
    opt.step()
    assert not torch.equal(before, cb.detach())
    assert (model[8].weight[zeros] == 0).all()
    assert len(torch.unique(model[8].weight)) <= 17

    path = tmp_path / "shared.brisk"
    save(model, path, bits=4, conv_bits=6)
    loaded = load(path)
    for name, m in (("0", model[0]), ("4", model[4]), ("8", model[8]), ("10", model[10])):
        assert torch.equal(loaded[f"{name}.weight"], m.weight.detach()), name
    make_permanent(model)
    assert not any("parametrizations" in k for k in model.state_dict())


def test_size_report_accounting(tmp_path):
    model = pruned_lenet()
    path = tmp_path / "m.brisk"
    info = save(model, path)
    rep = size_report(model, path)
    assert rep["compressed_bytes"] == os.path.getsize(path) == info["bytes"]
    buf = io.BytesIO()
    torch.save(
        {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}, buf
    )
    assert rep["dense_bytes"] == buf.getbuffer().nbytes
    assert rep["ratio"] == rep["dense_bytes"] / rep["compressed_bytes"]
    assert rep["ratio"] > 10  # 90% pruned, 5-8 bit shared weights, entropy coded
    assert sum(rep["tensors"].values()) < rep["compressed_bytes"]  # + header
    # a bigger codebook costs more; sparse storage beats dense symbols at 90% zeros
    assert save(model, tmp_path / "b8.brisk", bits=8)["bytes"] > info["bytes"]
    assert save(model, tmp_path / "dense.brisk", sparse=False)["bytes"] > info["bytes"]


def test_long_gaps_trailing_zeros_and_empty(tmp_path):
    w = torch.zeros(3, 1000)
    w[0, 0], w[0, 999], w[1, 500], w[2, 7] = 1.5, -2.0, 0.25, 3.0  # gaps >> 2**5
    sd = {
        "a": w,
        "b": torch.zeros(4, 4),
        "c": torch.arange(5),
        "d": torch.randn(3, dtype=torch.float64),
    }
    path = tmp_path / "g.brisk"
    save(sd, path, raw_dtype="float32")
    out = load(path)
    assert (
        torch.equal(out["a"], w)
        and torch.equal(out["b"], sd["b"])
        and torch.equal(out["c"], sd["c"])
    )
    assert out["d"].dtype == torch.float64 and torch.allclose(out["d"], sd["d"].float().double())
    save(sd, path, raw_dtype="float16")
    assert torch.allclose(load(path)["d"], sd["d"], atol=1e-2)


def test_load_into_pruned_model_and_errors(tmp_path):
    model = pruned_lenet()
    save(model, tmp_path / "m.brisk")
    target = prune(lenet(3), amount=0.5)
    load(tmp_path / "m.brisk", model=target)
    ref = load(tmp_path / "m.brisk")
    assert torch.equal(target[8].weight, ref["8.weight"])
    assert torch.equal(target[8].weight_mask, (ref["8.weight"] != 0).float())
    (tmp_path / "bad.brisk").write_bytes(b"NOTBRISK" + b"\0" * 32)
    with pytest.raises(ValueError, match="not a brisk compressed file"):
        load(tmp_path / "bad.brisk")
    with pytest.raises(ValueError, match="bits"):
        save(model, tmp_path / "x.brisk", bits=9)
    with pytest.raises(ValueError, match="did you mean 'huffman'"):
        save(model, tmp_path / "x.brisk", entropy="hufman")
    with pytest.raises(
        ValueError,
        match=r"m\.brisk'.*do not match the model.*'0\.weight' is \[6, 1, 5, 5\] in the file, \[3, 3\]",
    ):
        load(tmp_path / "m.brisk", model=nn.Sequential(nn.Linear(3, 3)))  # before decoding


def test_huffman_coder_round_trip_and_near_entropy():
    rng = np.random.default_rng(0)
    for alphabet, n in ((32, 20000), (256, 5000), (2, 10), (257, 300)):
        p = rng.dirichlet(np.ones(alphabet) * 0.3)
        sym = rng.choice(alphabet, size=n, p=p)
        data, nbits = _huffman_encode(sym, alphabet)
        assert np.array_equal(_huffman_decode(data, alphabet, n, nbits), sym)
        freq = np.bincount(sym, minlength=alphabet) / n
        h = -(freq[freq > 0] * np.log2(freq[freq > 0])).sum()
        assert h * n <= nbits <= (h + 1) * n  # Huffman: within 1 bit/symbol of entropy
    one = np.full(50, 3)
    data, nbits = _huffman_encode(one, 8)
    assert nbits == 50 and np.array_equal(_huffman_decode(data, 8, 50, nbits), one)
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    lengths = _huffman_lengths(np.array(fib))  # unconstrained depth would be 29
    assert lengths.max() <= 16 and (2.0 ** -lengths.astype(float)).sum() <= 1.0  # Kraft
    sym = np.repeat(np.arange(30), fib)[:50000]
    data, nbits = _huffman_encode(sym, 30)
    assert np.array_equal(_huffman_decode(data, 30, len(sym), nbits), sym)


def test_kmeans_1d():
    v = torch.tensor([0.5, -1.0, 0.5, 2.0, -1.0])
    cb, a = kmeans_1d(v, 4)
    assert torch.equal(cb[a], v)  # <= k distinct values: exact
    g = torch.Generator().manual_seed(0)
    v = torch.cat(
        [torch.randn(3000, generator=g) * 0.1 - 1, torch.randn(3000, generator=g) * 0.1 + 1]
    )
    cb, a = kmeans_1d(v, 8)
    assert cb.numel() == 8 and torch.all(cb[1:] >= cb[:-1])
    d = (v[:, None] - cb[None, :]).abs()
    assert torch.allclose(d.gather(1, a[:, None]).squeeze(1), d.min(1).values)  # nearest centroid
    lin = torch.linspace(float(v.min()), float(v.max()), 8)
    err_init = (v[:, None] - lin).abs().min(1).values.square().mean()
    assert (cb[a] - v).square().mean() < 0.7 * err_init  # Lloyd improves on linear init


def test_lossless_sparse_file_bits_none(tmp_path):
    model = pruned_lenet()
    path = tmp_path / "sparse.brisk"
    info = save(model, path, bits=None)
    back = load(path)
    sd = model.state_dict()
    assert sorted(back) == sorted(sd)
    for k, v in sd.items():
        assert torch.equal(back[k], v), k  # exact: no codebook, float32 values
    with torch.no_grad():
        assert torch.equal(load(path, model=lenet(5).eval())(X), model(X))
    nnz = sum(int((v != 0).sum()) for v in sd.values() if v.dim() >= 2)
    rep = size_report(model, path)
    # float32 per nonzero plus its skip symbol, far below the dense float32 file
    assert 4 * nnz < info["bytes"] < 4 * nnz * 1.5 + 4096
    assert rep["ratio"] > 5
    assert info["bytes"] > save(model, tmp_path / "shared.brisk", bits=5)["bytes"]
    half = save(model, tmp_path / "half.brisk", bits=None, raw_dtype="float16")["bytes"]
    assert half < info["bytes"]
    w16 = load(tmp_path / "half.brisk")["8.weight"]
    assert torch.allclose(w16, sd["8.weight"], rtol=1e-3, atol=1e-4)
    assert torch.equal(w16 == 0, sd["8.weight"] == 0)
