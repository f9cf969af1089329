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
