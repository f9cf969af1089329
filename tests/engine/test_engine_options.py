"""One exact equivalence test per engine option (issue 10).

Each test compares ``fit`` with an independent computation: a hand-written torch loop, a
closed-form learning-rate sequence, or the data itself. None relies on an end-to-end
accuracy threshold, so a one-line bug in the loop (a weight dropped, a schedule read one
step late, the same shuffle every epoch, augmentation leaking into validation) fails here.

The *probe* model makes learning rates observable exactly: ``Linear(1, 1, bias=False)``
on inputs of 1 with the loss ``mean(output)`` has gradient 1 for every batch, so plain SGD
moves the weight by exactly ``-lr`` per optimizer step (``-k * lr`` if accumulated
micro-batch gradients were not weighted).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import brisk
from brisk.callbacks import Callback

# ----------------------------------------------------------------------------- helpers


def mean_output(out, y):
    """A loss whose gradient w.r.t. the probe's weight is mean(x) = 1."""
    return out.mean()


def probe():
    net = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.zero_()
    return net


class WeightTrace(Callback):
    """The probe's weight after every batch (a host read per batch is fine in a test)."""

    def __init__(self, net):
        self.net, self.values = net, []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(float(self.net.weight.detach()))


def step_sizes(trace: WeightTrace) -> list[float]:
    """Per-batch weight decrease: the learning rate of the optimizer step that ended at
    that batch, 0 for a batch that only accumulated."""
    w = [0.0, *trace.values]
    return [a - b for a, b in zip(w[:-1], w[1:], strict=True)]


def probe_fit(n, batch_size, epochs=1, lr=0.1, **trainer_kwargs):
    fit_kwargs = {k: trainer_kwargs.pop(k) for k in ("schedule",) if k in trainer_kwargs}
    net = probe()
    trace = WeightTrace(net)
    trainer = brisk.Trainer(net, optimizer=brisk.optimizers.SGD(learning_rate=lr),
                            loss=mean_output, **trainer_kwargs)
    trainer.fit(torch.ones(n, 1), torch.zeros(n), batch_size=batch_size, epochs=epochs,
                shuffle=False, verbose=0, callbacks=[trace], **fit_kwargs)
    return step_sizes(trace), trainer


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(5, 16), nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def hand_sgd(net, batches, lr, clip_norm=None, clip_value=None):
    """The reference: plain torch SGD, one step per list of micro-batches, the loss being
    the mean over all samples of the group."""
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for group in batches:
        opt.zero_grad()
        xs = torch.cat([x for x, _ in group])
        ys = torch.cat([y for _, y in group])
        F.cross_entropy(net(xs), ys).backward()
        if clip_value is not None:
            torch.nn.utils.clip_grad_value_(net.parameters(), clip_value)
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip_norm)
        opt.step()
    return net


def assert_same_weights(a, b, atol=1e-6):
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, rtol=0, atol=atol, msg=k)


# ----------------------------------------------------------------------------- accumulate


def test_probe_steps_by_exactly_the_learning_rate():
    sizes, trainer = probe_fit(n=6, batch_size=2, lr=0.25)
    assert sizes == pytest.approx([0.25, 0.25, 0.25], abs=1e-7)
    assert trainer.global_step == 3


@pytest.mark.parametrize("n, batch_size, k", [(8, 2, 4), (10, 2, 4), (7, 3, 2)])
def test_accumulated_micro_batches_make_one_step_of_the_group_mean(n, batch_size, k):
    """With the per-micro-batch weights, k batches sum to one gradient of 1 (not k), also
    for a short last group and a short last batch."""
    sizes, trainer = probe_fit(n=n, batch_size=batch_size, accumulate=k, lr=0.1)
    n_batches = -(-n // batch_size)
    expected = [0.1 if (i + 1) % k == 0 or i + 1 == n_batches else 0.0 for i in range(n_batches)]
    assert sizes == pytest.approx(expected, abs=1e-7)
    assert trainer.global_step == -(-n_batches // k)


@pytest.mark.parametrize("n, batch_size, k", [(32, 8, 4), (28, 8, 2), (23, 5, 3)])
def test_accumulate_equals_the_big_batch_hand_loop(n, batch_size, k):
    torch.manual_seed(0)
    x, y = torch.randn(n, 5), torch.randint(0, 3, (n,))
    ours, ref = Net(), Net()
    ref.load_state_dict(ours.state_dict())
    trainer = brisk.Trainer(ours, optimizer=brisk.optimizers.SGD(learning_rate=0.5),
                            loss="cross_entropy", accumulate=k)
    trainer.fit(x, y, batch_size=batch_size, epochs=2, shuffle=False, verbose=0)
    micro = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)]
    groups = [micro[i:i + k] for i in range(0, len(micro), k)]
    hand_sgd(ref, groups * 2, lr=0.5)
    assert_same_weights(ours, ref)


# ----------------------------------------------------------------------------- schedules


def test_schedule_is_read_at_each_optimizer_step():
    """Step t (counted over the whole fit, not per epoch) uses lr * schedule(t)."""
    sizes, _ = probe_fit(n=4, batch_size=1, epochs=3, lr=1.0,
                         schedule=lambda t: 1.0 / (1 + t))
    assert sizes == pytest.approx([1.0 / (1 + t) for t in range(12)], rel=1e-6)


def test_schedule_counts_optimizer_steps_not_batches_when_accumulating():
    sizes, _ = probe_fit(n=8, batch_size=1, epochs=2, lr=1.0, accumulate=2,
                         schedule=lambda t: 1.0 / (1 + t))
    expected = []
    for t in range(8):
        expected += [0.0, 1.0 / (1 + t)]
    assert sizes == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_fit_schedule_overrides_the_trainer_schedule():
    sizes, _ = probe_fit(n=3, batch_size=1, lr=1.0, schedule=lambda t: 0.5)
    assert sizes == pytest.approx([0.5] * 3)


@pytest.mark.parametrize("warmup", [1, 3, 5])
def test_warmup_rates_per_step(warmup):
    """Linear warmup from 0: step t < W uses lr * t / W, then the schedule restarted."""
    sched = lambda t: 0.9**t  # noqa: E731
    sizes, _ = probe_fit(n=8, batch_size=1, lr=1.0, warmup=warmup, schedule=sched)
    expected = [t / warmup if t < warmup else 0.9 ** (t - warmup) for t in range(8)]
    assert sizes == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_warmup_without_a_schedule_then_constant():
    sizes, _ = probe_fit(n=6, batch_size=1, lr=0.2, warmup=4)
    assert sizes == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2, 0.2], abs=1e-7)


def test_named_schedule_is_sized_in_optimizer_steps_when_accumulating():
    """'linear' over 2 epochs of 4 batches with accumulate=2 is 4 optimizer steps long:
    lr * (1 - t / 4) at step t, not a length counted in batches."""
    sizes, _ = probe_fit(n=4, batch_size=1, epochs=2, lr=1.0, accumulate=2, schedule="linear")
    assert sizes == pytest.approx([0, 1.0, 0, 0.75, 0, 0.5, 0, 0.25], abs=1e-6)
    sizes, _ = probe_fit(n=4, batch_size=1, epochs=2, lr=1.0, accumulate=2, warmup=1,
                         schedule="linear")
    assert sizes == pytest.approx([0, 0.0, 0, 1.0, 0, 2 / 3, 0, 1 / 3], abs=1e-6)


def test_named_schedule_reaches_its_end_at_the_last_step():
    """'linear' decays to 0 over the fit's length: lr * (1 - t / T) at step t."""
    sizes, _ = probe_fit(n=5, batch_size=1, epochs=2, lr=1.0, schedule="linear")
    assert sizes == pytest.approx([1 - t / 10 for t in range(10)], abs=1e-6)


# ----------------------------------------------------------------------------- clipping


@pytest.mark.parametrize("clip", [{"clip_norm": 0.05}, {"clip_value": 0.01},
                                  {"clip_norm": 0.05, "clip_value": 0.02}])
def test_gradient_clipping_equals_torch_clip(clip):
    torch.manual_seed(1)
    x, y = torch.randn(24, 5) * 4, torch.randint(0, 3, (24,))
    ours, ref, unclipped = Net(), Net(), Net()
    ref.load_state_dict(ours.state_dict())
    unclipped.load_state_dict(ours.state_dict())
    trainer = brisk.Trainer(ours, optimizer=brisk.optimizers.SGD(learning_rate=1.0),
                            loss="cross_entropy", **clip)
    trainer.fit(x, y, batch_size=8, shuffle=False, epochs=1, verbose=0)
    batches = [[(x[i:i + 8], y[i:i + 8])] for i in range(0, 24, 8)]
    hand_sgd(ref, batches, lr=1.0, **clip)
    assert_same_weights(ours, ref)
    hand_sgd(unclipped, batches, lr=1.0)
    with pytest.raises(AssertionError):  # the clip bites: the test can tell
        assert_same_weights(ours, unclipped)


# ----------------------------------------------------------------------------- shuffling


class Recorder(nn.Linear):
    """Records the sample ids (x[:, 0]) of every training batch, per epoch."""

    def __init__(self):
        super().__init__(1, 2)
        self.epochs: list[list[int]] = []

    def forward(self, x):
        if self.training:
            self.epochs[-1].extend(int(v) for v in x[:, 0])
        return super().forward(x)


class NewEpoch(Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.model.epochs.append([])


def orders(data, seed, shuffle=True, epochs=3, n=40):
    rec = Recorder()
    trainer = brisk.Trainer(rec, optimizer="sgd", loss="cross_entropy", seed=seed)
    if data == "tensor":
        trainer.fit(torch.arange(n, dtype=torch.float32)[:, None], torch.zeros(n, dtype=torch.long),
                    batch_size=8, epochs=epochs, shuffle=shuffle, verbose=0, callbacks=[NewEpoch()])
    else:
        ds = torch.utils.data.TensorDataset(torch.arange(n, dtype=torch.float32)[:, None],
                                            torch.zeros(n, dtype=torch.long))
        trainer.fit(ds, batch_size=8, epochs=epochs, shuffle=shuffle, verbose=0,
                    callbacks=[NewEpoch()])
    return rec.epochs


@pytest.mark.parametrize("data", ["tensor", "dataset"])
def test_each_epoch_is_a_new_permutation_reproducible_from_the_seed(data):
    a = orders(data, seed=7)
    assert len(a) == 3
    for epoch in a:
        assert sorted(epoch) == list(range(40))  # every sample exactly once
        assert epoch != list(range(40))  # shuffled
    assert a[0] != a[1] and a[1] != a[2] and a[0] != a[2]  # reshuffled every epoch
    assert orders(data, seed=7) == a  # reproducible
    assert orders(data, seed=8) != a  # and the seed matters
    assert orders(data, seed=None) != orders(data, seed=None)  # unseeded runs differ


@pytest.mark.parametrize("data", ["tensor", "dataset"])
def test_shuffle_false_keeps_the_order(data):
    assert orders(data, seed=0, shuffle=False, epochs=2) == [list(range(40))] * 2


# ----------------------------------------------------------------------------- validation


def _shift(x, generator):
    return x + 100.0  # an augmentation that changes every loss


@pytest.mark.parametrize("source", ["arrays", "validation_split", "loaders"])
def test_training_augmentation_never_reaches_validation(source):
    torch.manual_seed(0)
    x, y = torch.rand(60, 1, 2, 2), torch.randint(0, 3, (60,))
    xv, yv = torch.rand(20, 1, 2, 2), torch.randint(0, 3, (20,))
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    trainer = brisk.Trainer(net, optimizer="sgd", loss="cross_entropy", seed=0)
    kwargs = {"epochs": 2, "batch_size": 10, "verbose": 0, "augment": _shift}
    if source == "arrays":
        h = trainer.fit(x, y, validation_data=(xv, yv), **kwargs)
    elif source == "validation_split":
        h = trainer.fit(torch.cat([x, xv]), torch.cat([y, yv]), validation_split=0.25, **kwargs)
    else:
        h = trainer.fit(brisk.DeviceLoader(x, y, batch_size=10),
                        validation_data=brisk.DeviceLoader(xv, yv, batch_size=7), **kwargs)
    with torch.no_grad():
        expected = F.cross_entropy(net(xv), yv).item()  # last epoch: the final weights
        shifted = F.cross_entropy(net(xv + 100), yv).item()
    assert h.history["val_loss"][-1] == pytest.approx(expected, rel=1e-5)
    assert abs(shifted - expected) > 1e-3  # the augmentation would have shown


def test_training_augmentation_is_applied_to_training_batches():
    """The other half: the training loss is that of the augmented inputs."""
    torch.manual_seed(0)
    x, y = torch.rand(20, 1, 2, 2), torch.randint(0, 3, (20,))
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    ref = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    ref.load_state_dict(net.state_dict())
    trainer = brisk.Trainer(net, optimizer=brisk.optimizers.SGD(learning_rate=0.01),
                            loss="cross_entropy")
    trainer.fit(x, y, batch_size=20, shuffle=False, epochs=1, verbose=0, augment=_shift)
    hand_sgd(ref, [[(x + 100, y)]], lr=0.01)
    assert_same_weights(net, ref)


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_equals_an_independent_numpy_computation():
    torch.manual_seed(3)
    x, y = torch.randn(53, 5), torch.randint(0, 3, (53,))
    net = Net()
    trainer = brisk.Trainer(net, optimizer="sgd", loss="cross_entropy",
                            metrics=["accuracy", brisk.metrics.SparseTopKCategoricalAccuracy(k=2)])
    trainer.fit(x, y, epochs=2, batch_size=8, verbose=0)
    loss, acc, top2 = trainer.evaluate(x, y, batch_size=10)
    logits = net(x).detach().numpy().astype(np.float64)
    labels = y.numpy()
    logp = logits - logits.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    assert loss == pytest.approx(-logp[np.arange(53), labels].mean(), rel=1e-5)
    assert acc == pytest.approx(np.mean(logits.argmax(1) == labels))
    rank = (logits > logits[np.arange(53), labels][:, None]).sum(1)  # classes scored higher
    assert top2 == pytest.approx(np.mean(rank < 2))
    assert 0 < np.mean(rank < 2) < 1 and np.mean(rank < 2) != np.mean(rank < 1)


# ----------------------------------------------------------------------------- checkpoints


def test_load_checkpoint_restores_the_random_number_generator(tmp_path):
    trainer = brisk.Trainer(Net(), optimizer="adam", loss="cross_entropy")
    trainer.fit(torch.randn(16, 5), torch.randint(0, 3, (16,)), epochs=1, verbose=0)
    trainer.save_checkpoint(tmp_path / "c.pt")
    expected = torch.rand(8)
    torch.manual_seed(12345)  # anything else
    trainer.load_checkpoint(tmp_path / "c.pt")
    torch.testing.assert_close(torch.rand(8), expected, rtol=0, atol=0)


def test_resume_from_an_epoch_checkpoint_equals_the_uninterrupted_run(tmp_path):
    """Dropout draws from the global RNG, so resume is exact only if the checkpoint
    restores it (and the step count, the optimizer state and the shuffle)."""
    x, y = torch.randn(48, 5), torch.randint(0, 3, (48,))

    def model():
        return nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))

    def trainer(net):
        return brisk.Trainer(net, optimizer="adam", loss="cross_entropy", seed=5,
                             schedule="cosine")

    full = model()
    trainer(full).fit(x, y, epochs=3, batch_size=8, verbose=0,
                      callbacks=[brisk.callbacks.ModelCheckpoint(str(tmp_path / "ep{epoch}.pt"))])
    resumed = model()
    t = trainer(resumed)
    t.load_checkpoint(tmp_path / "ep2.pt")
    torch.manual_seed(999)
    t.load_checkpoint(tmp_path / "ep2.pt")  # the RNG comes from the file, not from here
    t.fit(x, y, epochs=3, initial_epoch=2, batch_size=8, verbose=0)
    assert_same_weights(resumed, full, atol=0)


# ----------------------------------------------------------------------------- augment layout


def test_augment_sees_channels_first_batches_of_a_channels_last_model():
    """A Keras-layout (N, H, W, C) model: the augmentation gets (N, C, H, W) views and its
    result goes back to (N, H, W, C). Flipping the width in NCHW (axis 3) must train
    exactly like data flipped by hand along the width in NHWC (axis 2)."""
    from brisk.layers import Conv2D, Dense, Flatten

    def model():
        m = brisk.Sequential([Conv2D(2, 3, input_shape=(5, 4, 1)), Flatten(), Dense(3)])
        m.build((5, 4, 1))
        return m

    torch.manual_seed(0)
    x, y = torch.rand(12, 5, 4, 1), torch.randint(0, 3, (12,))
    a, b = model(), model()
    b.load_state_dict(a.state_dict())
    shapes = []

    def flip_w(xb, generator):
        shapes.append(tuple(xb.shape))
        assert generator is not None
        return xb.flip(3)

    for m, data, aug in ((a, x, flip_w), (b, x.flip(2), None)):
        t = brisk.Trainer(m, optimizer=brisk.optimizers.SGD(learning_rate=0.1),
                          loss="cross_entropy", seed=0)
        t.fit(data, y, batch_size=4, shuffle=False, epochs=1, verbose=0, augment=aug)
    assert shapes == [(4, 1, 5, 4)] * 3
    assert_same_weights(a, b)


def test_augment_must_be_callable():
    trainer = brisk.Trainer(Net(), loss="cross_entropy")
    with pytest.raises(TypeError) as e:
        trainer.fit(torch.randn(8, 5), torch.randint(0, 3, (8,)), verbose=0, augment="flip")
    assert str(e.value) == "augment: expected a callable (x, generator) -> x, got 'flip'"


# ----------------------------------------------------------------------------- evaluate / predict


class BatchSizes(nn.Linear):
    def __init__(self):
        super().__init__(5, 3)
        self.sizes: list[int] = []
        self.first: list[float] = []

    def forward(self, x):
        if not self.training:
            self.sizes.append(x.shape[0])
            self.first.append(float(x[0, 0]))
        return super().forward(x)


def test_evaluate_and_predict_batch_by_32_in_order_by_default():
    # Keras's default batch size for evaluate and predict
    net = BatchSizes()
    trainer = brisk.Trainer(net, optimizer="sgd", loss="cross_entropy")
    x = torch.arange(100 * 5, dtype=torch.float32).reshape(100, 5)
    y = torch.zeros(100, dtype=torch.long)
    trainer.evaluate(x, y)
    net.sizes.clear(), net.first.clear()
    trainer.evaluate(x, y)
    assert net.sizes == [32, 32, 32, 4] and net.first == [0.0, 160.0, 320.0, 480.0]  # in order
    net.sizes.clear(), net.first.clear()
    trainer.predict(x)
    assert net.sizes == [32, 32, 32, 4] and net.first == [0.0, 160.0, 320.0, 480.0]
    net.sizes.clear()
    trainer.evaluate(x, y, batch_size=50)
    assert net.sizes == [50, 50]


def test_evaluate_prints_only_when_verbose(capsys):
    trainer = brisk.Trainer(Net(), optimizer="sgd", loss="cross_entropy", metrics=["accuracy"])
    x, y = torch.randn(10, 5), torch.randint(0, 3, (10,))
    logs = trainer.evaluate(x, y, return_dict=True)
    assert capsys.readouterr().out == ""
    trainer.evaluate(x, y, verbose=1)
    out = capsys.readouterr().out
    assert f"loss: {logs['loss']:.4f}" in out and f"accuracy: {logs['accuracy']:.4f}" in out


def test_evaluate_errors_name_the_argument():
    trainer = brisk.Trainer(Net(), loss=None)
    with pytest.raises(ValueError) as e:
        trainer.evaluate(torch.randn(4, 5), torch.zeros(4, dtype=torch.long))
    assert str(e.value) == "loss: this Trainer has no loss; pass loss= to evaluate"
    trainer = brisk.Trainer(Net(), loss="cross_entropy")
    with pytest.raises(TypeError, match=r"^x: expected a numpy array"):
        trainer.evaluate("abc", None)
    with pytest.raises(ValueError, match=r"^batch_size: expected a positive integer, got -2"):
        trainer.evaluate(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), batch_size=-2)


def test_predict_on_an_unbuilt_model_from_a_dataset_or_loader():
    """No array to take a sample from: the first batch of the loader builds the model."""
    from brisk.layers import Dense

    x = torch.randn(10, 4)
    for data in (torch.utils.data.TensorDataset(x),
                 torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=3),
                 brisk.DeviceLoader(x, batch_size=3, shuffle=False)):
        m = brisk.Sequential([Dense(2)])
        m.compile(optimizer="sgd", loss="mse")
        out = m.predict(data)
        assert out.shape == (10, 2)
        with torch.no_grad():
            np.testing.assert_allclose(out, m(x).numpy(), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- state


def test_checkpoint_restores_epoch_step_and_weights(tmp_path):
    x, y = torch.randn(40, 5), torch.randint(0, 3, (40,))
    a = brisk.Trainer(Net(), optimizer="adam", loss="cross_entropy")
    a.fit(x, y, epochs=3, batch_size=8, verbose=0)
    a.save_checkpoint(tmp_path / "c.pt")
    b = brisk.Trainer(Net(), optimizer="adam", loss="cross_entropy")
    b.load_checkpoint(tmp_path / "c.pt")
    assert (b.epoch, b.global_step) == (2, 15)
    assert_same_weights(b.module, a.module, atol=0)
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    for k in sa["state"]:
        for name in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(sa["state"][k][name], sb["state"][k][name], rtol=0, atol=0)


def test_schedule_free_weights_saved_are_the_evaluation_weights(tmp_path):
    """Schedule-free optimizers train on one sequence of weights and evaluate on another;
    files get the evaluation weights whatever mode the optimizer was left in."""
    from safetensors.torch import load_file

    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    t = brisk.Trainer(Net(), optimizer="schedulefree_adamw", loss="cross_entropy", seed=0)
    t.fit(x, y, epochs=1, batch_size=8, verbose=0)
    eval_weights = {k: v.clone() for k, v in t.module.state_dict().items()}
    t.optimizer.train()  # as if interrupted mid-epoch
    assert any(not torch.equal(v, eval_weights[k]) for k, v in t.module.state_dict().items())
    t.save_checkpoint(tmp_path / "c.pt")
    saved = torch.load(tmp_path / "c.pt", weights_only=True)["model"]
    for k, v in eval_weights.items():
        torch.testing.assert_close(saved[k], v, rtol=0, atol=0)
    t.optimizer.train()
    t.save(tmp_path / "w.safetensors")
    for k, v in load_file(tmp_path / "w.safetensors").items():
        torch.testing.assert_close(v, eval_weights[k], rtol=0, atol=0)


def test_save_writes_the_module_weights_as_safetensors(tmp_path):
    from safetensors.torch import load_file

    net = Net()
    brisk.Trainer(net, loss="cross_entropy").save(tmp_path / "w.safetensors")
    saved = load_file(tmp_path / "w.safetensors")
    assert set(saved) == set(net.state_dict())
    for k, v in net.state_dict().items():
        assert torch.equal(saved[k], v)


def test_fit_needs_a_loader_of_known_length():
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            for i in range(8):
                yield torch.full((5,), float(i)), torch.tensor(i % 3)

    trainer = brisk.Trainer(Net(), optimizer="sgd", loss="cross_entropy")
    before = {k: v.clone() for k, v in trainer.module.state_dict().items()}
    with pytest.raises(ValueError, match=r"^x: the loader has no length \(an IterableDataset"):
        trainer.fit(torch.utils.data.DataLoader(Stream(), batch_size=4), epochs=1, verbose=0)
    for k, v in trainer.module.state_dict().items():
        assert torch.equal(v, before[k])  # refused before training


def test_accumulate_needs_a_loader_of_known_batch_size():
    """A batch_sampler-driven DataLoader has no batch_size: per-micro-batch weights are
    unknown, which must be an error rather than a silently wrong average."""
    from brisk.engine.step import group_size as _group_size

    with pytest.raises(ValueError) as e:
        _group_size(None, 0, 2)
    assert str(e.value) == "accumulate: needs a loader with a known length and batch_size"
    assert _group_size((8, 4, 3), 0, 2) == 16 and _group_size((8, 4, 3), 3, 2) == 11
    assert _group_size((8, 5, 8), 4, 2) == 8  # the lone last batch


def test_batch_end_logs_are_the_running_means_of_the_epoch():
    torch.manual_seed(0)
    x, y = torch.randn(12, 5), torch.randint(0, 3, (12,))
    net = Net()
    seen, weights = [], []

    class Spy(Callback):
        def on_train_batch_begin(self, batch, logs=None):
            weights.append({k: v.clone() for k, v in net.state_dict().items()})

        def on_train_batch_end(self, batch, logs=None):
            seen.append((dict(logs), list(logs), len(logs)))

    trainer = brisk.Trainer(net, optimizer=brisk.optimizers.SGD(learning_rate=0.1),
                            loss="cross_entropy", metrics=["accuracy"])
    trainer.fit(x, y, batch_size=4, shuffle=False, epochs=1, verbose=0, callbacks=[Spy()])
    losses, hits = [], []
    for i, w in enumerate(weights):
        ref = Net()
        ref.load_state_dict(w)
        with torch.no_grad():
            out = ref(x[4 * i:4 * i + 4])
        losses.append(F.cross_entropy(out, y[4 * i:4 * i + 4]).item())
        hits += (out.argmax(1) == y[4 * i:4 * i + 4]).tolist()
        logs, keys, n = seen[i]
        assert keys == ["loss", "accuracy"] and n == 2
        assert logs["loss"] == pytest.approx(np.mean(losses), rel=1e-5)
        assert logs["accuracy"] == pytest.approx(np.mean(hits))


def test_trainer_lr_find_sweeps_and_restores_the_trainer():
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    trainer = brisk.Trainer(Net(), optimizer="sgd", loss="cross_entropy")
    before = {k: v.clone() for k, v in trainer.module.state_dict().items()}
    result = trainer.lr_find(x, y, start_lr=1e-4, end_lr=1.0, num_steps=10, batch_size=8)
    assert len(result.lrs) == len(result.losses) <= 10
    assert result.lrs[0] == pytest.approx(1e-4) and result.lrs[1] == pytest.approx(1e-4 * 10**(4 / 9))
    for k, v in trainer.module.state_dict().items():
        assert torch.equal(v, before[k])


# ----------------------------------------------------------------------------- fit arguments


def test_fit_defaults_one_epoch_batches_of_32_shuffled(capsys):
    net = Recorder()
    net.epochs.append([])
    trainer = brisk.Trainer(net, optimizer="sgd", loss="cross_entropy", seed=0)
    h = trainer.fit(torch.arange(100, dtype=torch.float32)[:, None],
                    torch.zeros(100, dtype=torch.long))
    assert len(h.history["loss"]) == 1 and trainer.global_step == 4  # ceil(100 / 32)
    order = net.epochs[0]
    assert sorted(order) == list(range(100)) and order != list(range(100))
    lines = capsys.readouterr().out.strip().splitlines()  # verbose 'auto', not a terminal
    assert len(lines) == 1 and lines[0].startswith("Epoch 1/1")


def test_gd_makes_one_full_batch_step_per_epoch_in_chunks_of_4096():
    sizes = []
    net = probe()
    net.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]) if m.training else None)
    trainer = brisk.Trainer(net, optimizer=brisk.optimizers.get("gd", learning_rate=0.5),
                            loss=mean_output)
    trainer.fit(torch.ones(5000, 1), torch.zeros(5000), epochs=2, verbose=0)
    assert sizes == [4096, 904] * 2 and trainer.global_step == 2
    assert float(net.weight.detach()) == pytest.approx(-1.0, abs=1e-4)  # two steps of 0.5


def test_trainer_schedule_applies_when_fit_gives_none():
    net = probe()
    trace = WeightTrace(net)
    trainer = brisk.Trainer(net, optimizer=brisk.optimizers.SGD(learning_rate=1.0),
                            loss=mean_output, schedule=lambda t: 0.5 ** t)
    trainer.fit(torch.ones(4, 1), torch.zeros(4), batch_size=1, shuffle=False, verbose=0,
                callbacks=[trace])
    assert step_sizes(trace) == pytest.approx([1.0, 0.5, 0.25, 0.125])


def test_named_schedules_get_the_steps_per_epoch():
    """'inverse_sqrt' decays with beta = 1 / steps_per_epoch: 1 / sqrt(1 + t / spe)."""
    sizes, _ = probe_fit(n=6, batch_size=2, epochs=2, lr=1.0, schedule="inverse_sqrt")
    assert sizes == pytest.approx([1 / np.sqrt(1 + t / 3) for t in range(6)], rel=1e-6)


def test_the_loss_of_a_single_sample_epoch_is_not_halved():
    x, y = torch.randn(1, 5), torch.randint(0, 3, (1,))
    net = Net()
    with torch.no_grad():
        expected = F.cross_entropy(net(x), y).item()
    h = brisk.Trainer(net, optimizer=brisk.optimizers.SGD(learning_rate=0.0),
                      loss="cross_entropy").fit(x, y, verbose=0)
    assert h.history["loss"][0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 2, "initial_epoch": 2}, "initial_epoch: expected an int in [0, epochs), got 2"),
        ({"initial_epoch": 1.0}, "initial_epoch: expected an int in [0, epochs), got 1.0"),
        ({"initial_epoch": True}, "initial_epoch: expected an int in [0, epochs), got True"),
        ({"initial_epoch": -1}, "initial_epoch: expected an int in [0, epochs), got -1"),
        ({"epochs": 1.5}, "epochs: expected a positive integer, got 1.5"),
        ({"validation_split": 0.5, "validation_data": (np.zeros((2, 5)), np.zeros(2))},
         "validation_split: give either validation_split or validation_data"),
        ({"validation_split": 0.01}, "validation_split: 0.01 leaves an empty split of 10 samples"),
        ({"validation_split": "0.2"}, "validation_split: expected a float in (0, 1), got '0.2'"),
        ({"validation_data": (np.zeros((2, 5)),)}, "validation_data: expected (x_val, y_val) or (x_val, y_val, sample_weight_val)"),
    ],
)
def test_fit_argument_errors_are_exact(kwargs, message):
    trainer = brisk.Trainer(Net(), optimizer="sgd", loss="cross_entropy")
    with pytest.raises(ValueError) as e:
        trainer.fit(torch.randn(10, 5), torch.randint(0, 3, (10,)), verbose=0, **kwargs)
    assert str(e.value) == message


def test_fit_errors_name_validation_data_and_need_a_loss():
    trainer = brisk.Trainer(Net(), optimizer="sgd", loss="cross_entropy")
    x, y = torch.randn(10, 5), torch.randint(0, 3, (10,))
    with pytest.raises(TypeError, match=r"^validation_data: expected a numpy array"):
        trainer.fit(x, y, verbose=0, validation_data="abc")
    with pytest.raises(ValueError, match=r"^validation_data: contains NaN"):
        trainer.fit(x, y, verbose=0, validation_data=(torch.full((2, 5), float("nan")), y[:2]))
    ds = torch.utils.data.TensorDataset(x, y)
    with pytest.raises(ValueError) as e:
        trainer.fit(ds, verbose=0, validation_split=0.2)
    assert str(e.value) == ("validation_split: only works with array inputs; pass "
                            "validation_data for a Dataset or DataLoader")
    with pytest.raises(ValueError) as e:
        brisk.Trainer(Net(), loss=None).fit(x, y, verbose=0)
    assert str(e.value) == "loss: this Trainer has no loss; pass loss= to train"


def test_validation_split_edge_sizes_and_label_free_losses():
    # 2 samples, split 0.5: one to train on, one to validate
    h = brisk.Trainer(Net(), optimizer="sgd", loss="cross_entropy").fit(
        torch.randn(2, 5), torch.randint(0, 3, (2,)), validation_split=0.5, verbose=0)
    assert "val_loss" in h.history
    # a loss that takes no labels: y=None splits too
    net = probe()
    h = brisk.Trainer(net, optimizer="sgd", loss=mean_output).fit(
        torch.ones(8, 1), None, validation_split=0.25, batch_size=2, verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(float(net.weight.detach()), abs=1e-6)


def test_fit_builds_an_unbuilt_model_from_a_dataset():
    from brisk.layers import Dense

    m = brisk.Sequential([Dense(3)])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    ds = torch.utils.data.TensorDataset(torch.randn(12, 4), torch.randint(0, 3, (12,)))
    h = m.fit(ds, epochs=1, batch_size=4, verbose=0)
    assert m.built and m.input_shape == (None, 4) and len(h.history["loss"]) == 1


# ----------------------------------------------------------------------------- targets, inputs


def _fit_weights(y, loss="cross_entropy", out=3):
    torch.manual_seed(0)
    net = nn.Linear(5, out)
    x = torch.linspace(-1, 1, 40).reshape(8, 5)
    brisk.Trainer(net, optimizer=brisk.optimizers.SGD(learning_rate=0.5), loss=loss).fit(
        x, y, batch_size=4, shuffle=False, verbose=0)
    return net


def test_sparse_labels_as_floats_or_a_column_train_like_integer_labels():
    y = torch.tensor([0, 2, 1, 1, 0, 2, 2, 1])
    ref = _fit_weights(y)
    for same in (y.float(), y[:, None], y.double()[:, None], y.numpy().astype("float32")):
        assert_same_weights(_fit_weights(same), ref, atol=0)


def test_integer_regression_targets_are_used_as_floats():
    y = torch.randint(-3, 4, (8, 3))
    assert_same_weights(_fit_weights(y, loss="mse"), _fit_weights(y.float(), loss="mse"), atol=0)


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        ({"y": torch.tensor([0.5] * 8)}, ValueError,
         "y: sparse_categorical_crossentropy needs integer class labels"),
        ({"y": torch.tensor([0, 1, 3, 0, 0, 0, 0, 0])}, ValueError,
         "y: labels must be in [0, 2] for a model with 3 outputs and "
         "sparse_categorical_crossentropy; found labels in [0, 3]"),
        ({"y": torch.zeros(8, 3), "loss": "categorical_crossentropy", "out": 4}, ValueError,
         "y: categorical_crossentropy needs one-hot labels of shape (N, 4), got (8, 3); use "
         "sparse_categorical_crossentropy for integer labels"),
        ({"y": torch.zeros(8, 3), "loss": "mse", "out": 2}, ValueError,
         "y: each target has 3 values but the model outputs 2 per sample"),
    ],
)
def test_target_errors_are_exact(kwargs, exc, message):
    with pytest.raises(exc) as e:
        _fit_weights(**kwargs)
    assert str(e.value) == message


def test_validation_labels_are_checked_under_their_own_name():
    trainer = brisk.Trainer(Net(), optimizer="sgd", loss="cross_entropy")
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    with pytest.raises(ValueError) as e:
        trainer.fit(x, y, verbose=0, validation_data=(x[:2], torch.tensor([0, 7])))
    assert str(e.value) == ("validation_data labels: labels must be in [0, 2] for a model with "
                            "3 outputs and sparse_categorical_crossentropy; found labels in [0, 7]")


def test_list_inputs_and_huge_finite_values_are_accepted():
    trainer = brisk.Trainer(nn.Linear(2, 2), optimizer=brisk.optimizers.SGD(learning_rate=0.0),
                            loss="mse")
    h = trainer.fit([[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]], verbose=0)
    assert len(h.history["loss"]) == 1
    big = torch.full((4, 2), 3e38)  # the sum overflows to inf, yet every value is finite
    out = trainer.predict(big)
    assert out.shape == (4, 2)
    with pytest.raises(TypeError) as e:
        trainer.fit("abc", None, verbose=0)
    assert str(e.value) == ("x: expected a numpy array, torch tensor, torch Dataset, DataLoader or "
                            "brisk DeviceLoader, got str")
    with pytest.raises(TypeError, match=r"^x: expected a numeric array, got dtype <U1"):
        trainer.fit(np.array([["a", "b"]]), None, verbose=0)


# ----------------------------------------------------------------------------- loop plumbing


def test_callbacks_get_params_and_batch_indices_and_lr_is_logged():
    seen = {"batches": []}

    class Spy(Callback):
        def on_train_begin(self, logs=None):
            seen["params"] = dict(self.params)

        def on_train_batch_begin(self, batch, logs=None):
            seen["batches"].append(batch)

    net = probe()
    trainer = brisk.Trainer(net, optimizer=brisk.optimizers.SGD(learning_rate=1.0),
                            loss=mean_output)
    h = trainer.fit(torch.ones(6, 1), torch.zeros(6), batch_size=2, epochs=2, verbose=0,
                    callbacks=[Spy()], schedule=lambda t: 1 / (1 + t))
    assert seen["params"] == {"epochs": 2, "steps": 3, "verbose": 0}
    assert seen["batches"] == [0, 1, 2, 0, 1, 2]
    assert h.history["learning_rate"] == pytest.approx([1 / 3, 1 / 6])  # the last step's rate per epoch


def test_stopping_inside_an_epoch_still_ends_training_properly():
    ended = []

    class StopAtBatch(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.trainer.stop_training = True

        def on_train_end(self, logs=None):
            ended.append(True)

    trainer = brisk.Trainer(Net(), optimizer="sgd", loss="cross_entropy")
    h = trainer.fit(torch.randn(20, 5), torch.randint(0, 3, (20,)), batch_size=4, epochs=3,
                    verbose=0, callbacks=[StopAtBatch()])
    assert isinstance(h, brisk.callbacks.History) and h.epoch == [0] and ended == [True]
    assert trainer.global_step == 2


def test_validation_batches_are_fits_batch_size_as_keras():
    net = BatchSizes()
    trainer = brisk.Trainer(net, optimizer="sgd", loss="cross_entropy")
    x, y = torch.randn(10, 5), torch.zeros(10, dtype=torch.long)
    xv, yv = torch.randn(30, 5), torch.zeros(30, dtype=torch.long)
    trainer.fit(x, y, batch_size=8, verbose=0, validation_data=(xv, yv))
    assert net.sizes[-4:] == [8, 8, 8, 6]  # validation by fit's batch_size
    net.sizes.clear()
    trainer.fit(x, y, batch_size=4, verbose=0, validation_data=(xv, yv), validation_batch_size=10)
    assert net.sizes[-3:] == [10, 10, 10] and 4 not in net.sizes[-3:]


# ----------------------------------------------------------------------------- optimizer build


def test_batch_sizes_of_each_kind_of_loader():
    from brisk.engine.step import batch_sizes as _batch_sizes

    ds = torch.utils.data.TensorDataset(torch.zeros(10, 1))
    DL = torch.utils.data.DataLoader
    assert _batch_sizes(DL(ds, batch_size=4)) == (4, 3, 2)
    assert _batch_sizes(DL(ds, batch_size=4, drop_last=True)) == (4, 2, 4)
    assert _batch_sizes(DL(ds, batch_size=5)) == (5, 2, 5)
    assert _batch_sizes(brisk.DeviceLoader(torch.zeros(10, 1), batch_size=3)) == (3, 4, 1)
    sampler = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(ds), 4, False)
    assert _batch_sizes(DL(ds, batch_sampler=sampler)) is None  # no batch_size attribute
    assert _batch_sizes(DL(torch.utils.data.TensorDataset(torch.zeros(0, 1)), batch_size=4)) is None

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield from ()

    assert _batch_sizes(DL(Stream(), batch_size=4)) is None

    class Sized(torch.utils.data.IterableDataset):  # a length in batches, none in samples
        def __len__(self):
            return 8

        def __iter__(self):
            yield from ()

    class NoLenDataset:
        def __len__(self):
            raise TypeError("no length")

    assert _batch_sizes(DL(Sized(), batch_size=4)) == (4, 2, 4)
    fake = type("L", (), {"batch_size": 4, "__len__": lambda self: 2, "dataset": NoLenDataset()})()
    assert _batch_sizes(fake) is None


def test_a_module_without_trainable_parameters_computes_the_loss_only():
    # Keras 3.15.1 (tools/keras_oracle/frozen_fit.py): warns "The model does not have any
    # trainable weights." and runs the epochs with the loss logged, weights unchanged.
    net = nn.Linear(2, 2)
    net.requires_grad_(False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(8, 2), torch.randn(8, 2)
    t = brisk.Trainer(net, loss="mse", schedule="cosine")
    with pytest.warns(UserWarning, match="The model does not have any trainable weights"):
        h = t.fit(x, y, epochs=2, batch_size=4, verbose=0)
    want = float(((net(x) - y) ** 2).mean())
    np.testing.assert_allclose(h.history["loss"], [want, want], rtol=1e-6)
    assert t.global_step == 4 and "learning_rate" not in h.history
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.raises(ValueError, match="module: it has no trainable parameters"):
        t.lr_find(x, y)
    net.weight.requires_grad_(True)  # unfrozen: the next fit trains again
    t.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert not torch.equal(net.weight, before["weight"]) and torch.equal(net.bias, before["bias"])


def test_optimizer_objects_and_factories():
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    t = brisk.Trainer(net, optimizer=opt, loss="cross_entropy", schedule=lambda s: 0.5)
    t.fit(torch.randn(8, 5), torch.randint(0, 3, (8,)), verbose=0, batch_size=8)
    assert t.optimizer is opt and opt.param_groups[0]["lr"] == 0.25  # initial_lr * 0.5
    assert opt.param_groups[0]["initial_lr"] == 0.5
    got = []

    def factory(params):
        got.append(list(params))
        return torch.optim.SGD(got[-1], lr=0.1)

    net = Net()
    net.fc1.requires_grad_(False)
    t = brisk.Trainer(net, optimizer=factory, loss="cross_entropy")
    t.fit(torch.randn(8, 5), torch.randint(0, 3, (8,)), verbose=0)
    assert [p.shape for p in got[0]] == [p.shape for p in net.fc2.parameters()]
    with pytest.raises(TypeError) as e:
        brisk.Trainer(Net(), optimizer=3, loss="cross_entropy").fit(
            torch.randn(4, 5), torch.randint(0, 3, (4,)), verbose=0)
    assert str(e.value) == ("optimizer: expected a name, a brisk.optimizers object, a torch "
                            "optimizer or a callable params -> optimizer, got 3")


def test_optimizer_state_survives_fits_and_a_change_of_frozen_layers():
    """Adam's per-parameter state (step count, moments) carries over between fit calls, and
    over a rebuild when layers are frozen: the parameters that stay keep their state."""
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    net = Net()
    t = brisk.Trainer(net, optimizer="adam", loss="cross_entropy")
    t.fit(x, y, batch_size=8, verbose=0)
    first = t.optimizer
    t.fit(x, y, batch_size=8, verbose=0)
    assert t.optimizer is first  # same trainable set: not rebuilt
    assert int(t.optimizer.state[net.fc2.weight]["step"]) == 4
    moment = t.optimizer.state[net.fc2.weight]["exp_avg"].clone()
    net.fc1.requires_grad_(False)
    t._ensure_optimizer()
    assert t.optimizer is not first
    assert [id(p) for g in t.optimizer.param_groups for p in g["params"]] == [
        id(net.fc2.weight), id(net.fc2.bias)]
    torch.testing.assert_close(t.optimizer.state[net.fc2.weight]["exp_avg"], moment)
    t.fit(x, y, batch_size=8, verbose=0)
    assert int(t.optimizer.state[net.fc2.weight]["step"]) == 6
    assert net.fc1.weight not in t.optimizer.state


def test_gradients_are_reset_to_none_between_steps():
    """A parameter used by one batch but not the next must get no Adam update from the
    second (torch's zero_grad(set_to_none=True) semantics); zeroed gradients would move it
    through the momentum."""

    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(1, 1)
            self.extra = nn.Parameter(torch.ones(1))

        def forward(self, x):
            out = self.fc(x)
            return out * self.extra if bool(x.sum() > 0) else out

    net = Gate()
    t = brisk.Trainer(net, optimizer="adam", loss="mse")
    x = torch.tensor([[1.0], [2.0], [-1.0], [-2.0]])
    after = []

    class Spy(Callback):
        def on_train_batch_end(self, batch, logs=None):
            after.append(float(net.extra.detach()))

    t.fit(x, torch.zeros(4, 1), batch_size=2, shuffle=False, verbose=0, callbacks=[Spy()])
    assert after[0] != 1.0 and after[1] == after[0]


def test_dataset_order_depends_on_the_seed_only_not_on_the_global_rng():
    def order(consume):
        rec = Recorder()
        t = brisk.Trainer(rec, optimizer="sgd", loss="cross_entropy", seed=3)
        if consume:
            torch.rand(5)  # the global generator moves; the loader's own must not care
        ds = torch.utils.data.TensorDataset(torch.arange(24, dtype=torch.float32)[:, None],
                                            torch.zeros(24, dtype=torch.long))
        t.fit(ds, batch_size=6, verbose=0, callbacks=[NewEpoch()])
        return rec.epochs

    assert order(False) == order(True)


def test_no_warnings_from_training_on_a_dataset_on_the_cpu():
    import warnings

    t = brisk.Trainer(Net(), optimizer="sgd", loss="cross_entropy")
    ds = torch.utils.data.TensorDataset(torch.randn(8, 5), torch.randint(0, 3, (8,)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. pin_memory asked for without an accelerator
        t.fit(ds, batch_size=4, verbose=0)


# ----------------------------------------------------------------------------- checkpoint loading


class Opaque:
    """Not plain data: a weights_only load must refuse to build it."""


def save_as_on_a_gpu(path, payload, monkeypatch):
    """torch.save as a CUDA machine writes it: every storage is tagged 'cuda:0' in the file."""
    import torch.serialization

    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(payload, path)


def test_load_checkpoint_maps_tensors_to_the_cpu_by_default(tmp_path, monkeypatch):
    from brisk.engine.checkpoint import load_checkpoint

    save_as_on_a_gpu(tmp_path / "gpu.pt", {"w": torch.arange(4.0), "step": 3}, monkeypatch)
    state = load_checkpoint(tmp_path / "gpu.pt")
    assert state["w"].device == torch.device("cpu") and state["step"] == 3
    torch.testing.assert_close(state["w"], torch.arange(4.0), rtol=0, atol=0)
    meta = load_checkpoint(str(tmp_path / "gpu.pt"), map_location="meta")
    assert meta["w"].device == torch.device("meta") and meta["w"].shape == (4,)


def test_load_checkpoint_of_a_missing_file_names_it(tmp_path):
    from brisk.engine.checkpoint import load_checkpoint

    path = tmp_path / "missing.pt"
    with pytest.raises(FileNotFoundError) as e:
        load_checkpoint(path)
    assert str(e.value) == f"checkpoint: no such file '{path}'"
    with pytest.raises(FileNotFoundError) as e:
        load_checkpoint(str(path))
    assert str(e.value) == f"checkpoint: no such file '{path}'"


def test_load_checkpoint_unpickles_plain_data_only_whatever_the_environment(tmp_path,
                                                                            monkeypatch):
    import pickle

    from brisk.engine.checkpoint import load_checkpoint

    torch.save({"obj": Opaque(), "w": torch.ones(2)}, tmp_path / "c.pt")
    assert isinstance(torch.load(tmp_path / "c.pt", weights_only=False)["obj"], Opaque)
    # torch's opt-out of its weights_only default must not reach brisk's loader
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(ValueError, match="corrupt, truncated or not a checkpoint") as e:
        load_checkpoint(tmp_path / "c.pt")
    assert isinstance(e.value.__cause__, pickle.UnpicklingError)  # refused, never run


def test_trainer_load_checkpoint_maps_the_file_onto_the_trainer_device(tmp_path, monkeypatch):
    torch.manual_seed(0)
    a = brisk.Trainer(Net(), optimizer="adam", loss="cross_entropy", device="cpu")
    a.fit(torch.randn(16, 5), torch.randint(0, 3, (16,)), epochs=1, verbose=0)
    save_as_on_a_gpu(tmp_path / "gpu.pt", a.state_dict(), monkeypatch)
    net = Net()
    b = brisk.Trainer(net, optimizer="adam", loss="cross_entropy", device="cpu")
    seen = []
    load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("map_location"))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    b.load_checkpoint(tmp_path / "gpu.pt")
    assert len(seen) == 1
    assert isinstance(seen[0], torch.device) and seen[0] == b.device
    assert_same_weights(net, a.module, atol=0)
    assert b.global_step == a.global_step == 1


def _mlp_trainer(input_shape=True):
    from brisk.layers import Dense, Input

    layers = [Input((5,))] if input_shape else []
    m = brisk.Sequential([*layers, Dense(4, activation="relu"), Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return m


def test_a_fresh_unbuilt_model_loads_a_checkpoint(tmp_path):
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    a = _mlp_trainer()
    a.fit(x, y, epochs=2, verbose=0)
    a.trainer.save_checkpoint(tmp_path / "c.pt")
    b = _mlp_trainer(input_shape=False)  # no input shape: not built yet
    assert not b.built
    b.trainer.load_checkpoint(tmp_path / "c.pt")
    np.testing.assert_array_equal(b.predict(x), a.predict(x))
    assert b.trainer.global_step == a.trainer.global_step == 2


def test_bad_checkpoints_are_refused_naming_the_file_before_anything_changes(tmp_path):
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    a = _mlp_trainer()
    a.fit(x, y, epochs=1, verbose=0)
    a.trainer.save_checkpoint(tmp_path / "c.pt")
    a.save(tmp_path / "w.safetensors")
    good = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(good[: len(good) // 2])
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    del state["global_step"]
    state.pop("brisk.crc32")  # a file without a checksum (older brisk) misses global_step
    torch.save(state, tmp_path / "nostep.pt")
    other = _mlp_trainer()
    other.trainer.save_checkpoint(tmp_path / "other.pt")  # never fitted: no optimizer state
    wide = brisk.Sequential([brisk.layers.Input((6,)), brisk.layers.Dense(4), brisk.layers.Dense(3)])
    wide.compile(optimizer="adam", loss="mse")
    wide.trainer.save_checkpoint(tmp_path / "wide.pt")

    b = _mlp_trainer()
    before = {k: v.clone() for k, v in b.state_dict().items()}
    for name, msg in [
        ("w.safetensors", "a safetensors weights file, not a checkpoint"),
        ("cut.pt", "corrupt, truncated or not a checkpoint"),
        ("nostep.pt", "not a complete brisk checkpoint, missing ['global_step']"),
        ("wide.pt", "weight 'layers.0.linear.weight' is (4, 6), the model's is (4, 5)"),
    ]:
        with pytest.raises(ValueError) as e:
            b.trainer.load_checkpoint(tmp_path / name)
        assert f"checkpoint '{tmp_path / name}': " in str(e.value) and msg in str(e.value), name
        for k, v in b.state_dict().items():  # nothing was replaced
            assert torch.equal(v, before[k]), (name, k)
    assert b.trainer.global_step == 0


class _Recorder(torch.nn.Module):
    """Stands for brisk.applications' Preprocess: marked ``unit_images``, it records what
    the trainer hands it."""

    unit_images = True

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return x.float().flatten(1)


@pytest.mark.parametrize("source", ["array", "tensor", "dataset"])
def test_uint8_images_reach_a_unit_images_model_divided_by_255(source):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 1, 2, 2), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 4, (6,), generator=g)
    rec = _Recorder()
    net = torch.nn.Sequential(rec, torch.nn.Linear(4, 4))
    t = brisk.Trainer(net, optimizer="sgd", loss="cross_entropy", device="cpu")
    data = {"array": (x.numpy(), y.numpy()), "tensor": (x, y),
            "dataset": (torch.utils.data.TensorDataset(x, y), None)}[source]
    t.fit(*data, batch_size=6, epochs=1, shuffle=False, verbose=0)
    got = rec.seen[-1]
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, x.float() / 255, rtol=0, atol=1e-7)
    rec.seen.clear()
    t.predict(x.numpy() if source == "array" else x, verbose=0)
    torch.testing.assert_close(rec.seen[-1], x.float() / 255, rtol=0, atol=1e-7)
    # a model without the mark gets uint8 values as they are, as Keras feeds them
    plain = torch.nn.Sequential(_Recorder(), torch.nn.Linear(4, 4))
    plain[0].unit_images = False
    brisk.Trainer(plain, optimizer="sgd", loss="cross_entropy", device="cpu").fit(
        x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
    torch.testing.assert_close(plain[0].seen[-1], x.float(), rtol=0, atol=0)
