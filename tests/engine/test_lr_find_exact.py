"""brisk.engine.lr_find, pinned exactly: the batches the sweep trains on (default batch
sizes, full-batch 'gd', a torch optimizer, compiled runs dropping the short batch), the
set-up batch of a Dataset or loader, a loader's epochs, the label checks, the messages,
the precision decision's batch size, what is put back (CUDA RNG, train/eval flags), the
overflow rule of the divergence test, and the plot under a user's matplotlib settings."""

import struct
import sys
import warnings

import pytest
import torch

import brisk
from brisk.data import DeviceLoader
from brisk.engine import precision as precision_mod
from brisk.engine.lr_find import LRFindResult, _diverged_at, lr_find


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _Recorder(torch.nn.Module):
    """x[:, :1] * w, recording each training batch's size and every eval-mode input (the
    set-up dry run)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.sizes, self.train_inputs, self.eval_inputs = [], [], []

    def forward(self, x):
        if self.training:
            self.sizes.append(x.shape[0])
            self.train_inputs.append(x.detach().clone())
        else:
            self.eval_inputs.append(x.detach().clone())
        return x[:, :1] * self.w


def _rows(n, features=1):
    """n samples, small distinct values (no divergence at the rates used), zero targets."""
    x = (torch.arange(n * features, dtype=torch.float32).reshape(n, features) + 1) / 1e4
    return x, torch.zeros(n, 1)


def _sweep(trainer, x, y=None, **kwargs):
    kwargs = {"start_lr": 1e-4, "end_lr": 1e-3, "num_steps": 4, **kwargs}
    return lr_find(trainer, x, y, **kwargs)


# ----------------------------------------------------------------- batches of the sweep


def test_default_batch_size_is_32_with_the_short_last_batch_kept():
    """70 samples: batches of 32, 32 and 6 (no drop_last without compile), one step each."""
    m = _Recorder()
    t = brisk.Trainer(m, optimizer="sgd", loss="mse", seed=0)
    _sweep(t, *_rows(70))
    assert m.sizes == [32, 32, 6, 32]


def test_full_batch_gd_defaults_to_chunks_of_4096():
    """'gd': one step per pass over 4100 samples, in chunks of 4096 and 4."""
    m = _Recorder()
    t = brisk.Trainer(m, optimizer="gd", loss="mse", seed=0)
    r = _sweep(t, *_rows(4100), num_steps=2)
    assert m.sizes == [4096, 4, 4096, 4] and len(r.lrs) == 2


def test_a_torch_optimizer_trains_minibatches():
    """A torch optimizer (no brisk spec, so no ``full_batch``): batches of 32, a step each."""
    m = _Recorder()
    t = brisk.Trainer(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), loss="mse", seed=0)
    r = _sweep(t, *_rows(70))
    assert m.sizes == [32, 32, 6, 32] and len(r.raw_losses) == 4


def test_a_compiled_trainer_drops_the_short_batch_when_a_full_one_exists(monkeypatch):
    """compile=True (torch.compile stubbed out: the drop is lr_find's, not torch's): 70
    samples give batches 32, 32; 20 samples (under one batch) one batch of 20."""
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    m = _Recorder()
    t = brisk.Trainer(m, optimizer="sgd", loss="mse", seed=0, compile=True)
    _sweep(t, *_rows(70))
    assert m.sizes == [32, 32, 32, 32]
    m.sizes.clear()
    _sweep(t, *_rows(20))
    assert m.sizes == [20, 20, 20, 20]


def test_a_loader_that_has_no_batches_is_refused():
    """A loader whose length is 0 (here an IterableDataset that says so) has nothing to
    sweep over, even if it yields a batch for the set-up."""

    class ClaimsEmpty(torch.utils.data.IterableDataset):
        def __iter__(self):
            for i in range(4):
                yield torch.full((1,), i + 1.0), torch.zeros(1)

        def __len__(self):
            return 0

    t = brisk.Trainer(_Recorder(), optimizer="sgd", loss="mse", seed=0)
    with pytest.raises(ValueError) as e:
        _sweep(t, torch.utils.data.DataLoader(ClaimsEmpty(), batch_size=2))
    assert str(e.value) == "x: no training batches (fewer samples than one batch?)"


def test_a_device_loader_runs_its_epochs_0_1_in_order():
    """A user's DeviceLoader: the sweep's passes are the loader's epochs 0 and 1 (set_epoch),
    whatever iterations it saw before (the set-up batch is one)."""
    x, y = _rows(12)
    twin = DeviceLoader(x, y, batch_size=4, shuffle=True, seed=5)
    expected = []
    for epoch in (0, 1):
        twin.set_epoch(epoch)
        expected += [xb for xb, _ in twin]
    assert not torch.equal(torch.cat(expected[:3]), torch.cat(expected[3:]))  # reshuffled
    m = _Recorder()
    t = brisk.Trainer(m, optimizer="sgd", loss="mse", seed=0)
    _sweep(t, DeviceLoader(x, y, batch_size=4, shuffle=True, seed=5), num_steps=6)
    assert len(m.train_inputs) == 6
    assert all(torch.equal(a, b) for a, b in zip(m.train_inputs, expected, strict=True))


# ----------------------------------------------------------------- the set-up batch


def test_a_dataset_is_set_up_with_its_first_two_samples():
    """As fit: the dry run sees x of the first two samples, in order, as one batch."""
    x, y = _rows(40, features=3)
    m = _Recorder()
    t = brisk.Trainer(m, optimizer="sgd", loss="mse", seed=0)
    r = _sweep(t, torch.utils.data.TensorDataset(x, y))
    assert len(m.eval_inputs) == 1 and torch.equal(m.eval_inputs[0], x[:2])
    assert m.sizes == [32, 8, 32, 8] and len(r.lrs) == 4


class _Noise(torch.utils.data.IterDataPipe):
    """12 random samples from the seed its DataLoader gives it through set_seed."""

    def __init__(self):
        self.seed = None

    def set_seed(self, seed):
        self.seed = seed
        return self

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        for _ in range(12):
            yield torch.rand(2, generator=g) / 1e3, torch.zeros(1)

    def __len__(self):
        return 12


def _noisy_pipe():
    """A random datapipe, then shuffled."""
    return _Noise().shuffle()


def test_a_datapipe_is_set_up_with_the_batch_fits_set_up_sees():
    """The set-up loader is fit's: unshuffled (a pipe's shuffle is switched off) and seeded
    0, so a random pipe gives the dry run the batch fit's dry run gets."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # datapipes are deprecated
        fitted = _Recorder()
        brisk.Trainer(fitted, optimizer="sgd", loss="mse", seed=0).fit(
            _noisy_pipe(), epochs=1, batch_size=4, verbose=0)
        m = _Recorder()
        _sweep(brisk.Trainer(m, optimizer="sgd", loss="mse", seed=0), _noisy_pipe(),
               batch_size=4)
        # the same pipe, unshuffled and seeded as the set-up's DataLoader(shuffle=False)
        first = next(iter(torch.utils.data.DataLoader(
            _noisy_pipe(), batch_size=2, shuffle=False,
            generator=torch.Generator().manual_seed(0))))[0]
    assert torch.equal(fitted.eval_inputs[0], first)
    assert len(m.eval_inputs) == 1 and torch.equal(m.eval_inputs[0], first)


def test_the_precision_decision_counts_the_sweeps_batch_size(monkeypatch):
    """precision='auto' on a (faked) native-bf16 CPU decides at set-up from FLOPs per sample
    times the batch size lr_find trains with: 2 FLOPs x 7 for a 1x1 linear map."""
    monkeypatch.delenv(precision_mod.ENV, raising=False)
    monkeypatch.setattr(precision_mod, "cpu_native_bf16", lambda: "AMX")
    t = brisk.Trainer(torch.nn.Linear(1, 1, bias=False), optimizer="sgd", loss="mse",
                      precision="auto", seed=0)
    assert t.precision.pending
    _sweep(t, *_rows(14), batch_size=7)
    assert t.precision.mode == "fp32"
    assert t.precision.reason == (
        "CPU has AMX, but the model's forward is 2e-06 MFLOP per sample, 1.4e-05 MFLOP per "
        "batch of 7: under 32 MFLOP per batch, bf16 autocast's casts cost more than they save")


# ----------------------------------------------------------------- checks and messages


def test_labels_are_checked_against_the_loss_before_the_sweep():
    x = torch.ones(6, 4)
    y = torch.tensor([0, 1, 2, 5, 1, 0])
    t = brisk.Trainer(torch.nn.Linear(4, 3), optimizer="sgd",
                      loss="sparse_categorical_crossentropy", seed=0)
    with pytest.raises(ValueError) as e:
        _sweep(t, x, y)
    assert str(e.value) == (
        "y: labels must be in [0, 2] for a model with 3 outputs and "
        "sparse_categorical_crossentropy; found labels in [0, 5]")
    assert t.optimizer is None


def test_a_frozen_model_is_refused_with_the_full_message():
    net = torch.nn.Linear(2, 1).requires_grad_(False)
    t = brisk.Trainer(net, optimizer="sgd", loss="mse", seed=0)
    with pytest.raises(ValueError) as e:
        _sweep(t, torch.ones(8, 2), torch.zeros(8, 1))
    assert str(e.value) == (
        "module: it has no trainable parameters (every weight is frozen, e.g. by "
        "trainable=False); a learning-rate range test needs some")


# ----------------------------------------------------------------- what is put back


def test_train_and_eval_flags_are_put_back_as_booleans():
    for mode in (False, True):
        net = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Dropout(0.25))
        net.train(mode)
        t = brisk.Trainer(net, optimizer="sgd", loss="mse", seed=0)
        _sweep(t, torch.ones(8, 2), torch.zeros(8, 1))
        assert [sub.training for sub in net.modules()] == [mode, mode, mode]


def test_cuda_rng_is_saved_and_put_back_only_once_cuda_is_initialized(monkeypatch):
    """Faked CUDA: untouched while not initialized (no CUDA start-up for a CPU run), and
    the states read at the start are the ones put back."""
    calls = []
    states = [torch.tensor([3, 1, 4], dtype=torch.uint8)]

    def get_all():
        calls.append("get")
        return states

    monkeypatch.setattr(torch.cuda, "get_rng_state_all", get_all)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: calls.append(("set", s)))
    x, y = torch.ones(8, 2), torch.zeros(8, 1)
    t = brisk.Trainer(torch.nn.Linear(2, 1), optimizer="sgd", loss="mse", seed=0)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    _sweep(t, x, y)
    assert calls == []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    _sweep(t, x, y)
    assert calls == ["get", ("set", states)] and calls[1][1] is states


# ----------------------------------------------------------------- divergence


def test_a_smoothed_loss_that_overflows_stops_the_sweep():
    """Losses at the float maximum: their bias-corrected average at beta 0.9 rounds to inf
    at step 1 while every raw loss is finite, and 4 x the best (inf) cannot be exceeded:
    the non-finite smoothed value itself is the stop."""
    big = sys.float_info.max
    avg, smoothed = 0.0, []
    for i in range(3):
        avg = 0.9 * avg + (1 - 0.9) * big
        smoothed.append(avg / (1 - 0.9 ** (i + 1)))
    assert smoothed[0] == big and smoothed[1] == float("inf")
    assert _diverged_at([big, big, big], 0.9, 4.0) == 1


# ----------------------------------------------------------------- the plot


def _captured_plot(monkeypatch, tmp_path, result, rc=None):
    """plot_lr_find's figure and its canvas class as savefig gets them (under matplotlib
    settings ``rc``), and the PNG's pixel size."""
    import matplotlib
    from matplotlib.figure import Figure

    from brisk.engine.lr_find import plot_lr_find

    seen = {}
    real = Figure.savefig

    def spy(self, fname, *args, **kwargs):
        seen.update(fig=self, canvas=type(self.canvas))
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    path = tmp_path / "lr.png"
    with matplotlib.rc_context(rc or {}):
        plot_lr_find(result, path)
    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    seen["pixels"] = struct.unpack(">II", png[16:24])
    return seen


def _result():
    return LRFindResult(lrs=[1e-4, 1e-3, 1e-2, 1e-1], losses=[2.0, 1.8, 1.2, 9.0],
                        raw_losses=[2.1, 1.6, 1.0, 30.0], suggestion=1e-3)


def test_plot_is_600_by_400_pixels_whatever_the_default_dpi(monkeypatch, tmp_path):
    seen = _captured_plot(monkeypatch, tmp_path, _result(), {"figure.dpi": 72})
    assert seen["fig"].dpi == 100 and seen["pixels"] == (600, 400)


def test_plot_draws_on_an_agg_canvas(monkeypatch, tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    seen = _captured_plot(monkeypatch, tmp_path, _result())
    assert seen["canvas"] is FigureCanvasAgg


def test_plot_legend_goes_where_best_whatever_the_default(monkeypatch, tmp_path):
    seen = _captured_plot(monkeypatch, tmp_path, _result(), {"legend.loc": "upper right"})
    (ax,) = seen["fig"].axes
    assert ax.get_legend()._loc == 0  # 'best', not rcParams' 1 ('upper right')


def test_plot_smoothed_loss_is_the_first_cycle_colour_under_a_user_cycle(monkeypatch,
                                                                        tmp_path):
    """With a colour x linestyle cycle, every plot call advances it; the smoothed loss is
    still drawn in C0 (the cycle's first colour), not in the cycle's next one."""
    import matplotlib
    import matplotlib.colors as mcolors
    from cycler import cycler

    cycle = cycler(color=["#aa0000", "#00bb00", "#0000cc"]) + cycler(linestyle=["-", ":", "-."])
    seen = _captured_plot(monkeypatch, tmp_path, _result(), {"axes.prop_cycle": cycle})
    (ax,) = seen["fig"].axes
    with matplotlib.rc_context({"axes.prop_cycle": cycle}):
        colour = mcolors.to_hex(ax.get_lines()[1].get_color())
    assert ax.get_lines()[1].get_label() == "smoothed loss" and colour == "#aa0000"


def test_plot_y_range_tops_at_the_first_loss_or_twice_it(monkeypatch, tmp_path):
    """hi = max(first, min(max, 2 x first)) from the first smoothed loss, not the second:
    losses 1.0, 3.0, 0.5 give hi = 2.0, lo = 0.5 (raw included), pad = 0.075."""
    seen = _captured_plot(monkeypatch, tmp_path, LRFindResult(
        lrs=[1e-3, 1e-2, 1e-1], losses=[1.0, 3.0, 0.5], raw_losses=[1.2, 2.5, 0.6],
        suggestion=1e-2))
    (ax,) = seen["fig"].axes
    assert ax.get_ylim() == pytest.approx((0.425, 2.075), rel=1e-12)


def test_plot_y_range_of_an_all_zero_curve_is_plus_minus_1e_12(monkeypatch, tmp_path):
    seen = _captured_plot(monkeypatch, tmp_path, LRFindResult(
        lrs=[1e-3, 1e-2, 1e-1], losses=[0.0, 0.0, 0.0], raw_losses=[0.0, 0.0, 0.0],
        suggestion=None))
    (ax,) = seen["fig"].axes
    assert ax.get_ylim() == (-1e-12, 1e-12)
