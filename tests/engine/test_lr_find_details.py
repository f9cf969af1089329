"""lr_find details, every expected value written out by hand: the one-line summary, the
'steep' suggestion (forward differences over log10 lr, fastai), argument checks with
their messages, the defaults (1e-7..10 over 100 steps, diverge x4, smooth 0.98 and the
34 skipped points) and the sweep on a quadratic whose loss sequence is known exactly:
w' = w (1 - 2 lr) for loss = mean((x w)^2) with x = 1."""

import decimal
import math

import pytest
import torch

import brisk
from brisk.engine.lr_find import LRFindResult, _diverged_at, lr_find, suggest_lr


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_str_names_the_range_and_the_suggestion():
    r = LRFindResult([1e-7, 1e-4, 0.1], [3.0, 2.0, 9.0], [3.0, 1.0, 9.0], 1e-4)
    assert str(r) == "lr_find: 3 steps over 1e-07..0.1, suggested lr 0.0001"
    r = LRFindResult([0.5, 2.0, 8.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], None)
    assert str(r) == (
        "lr_find: 3 steps over 0.5..8, no suggestion (the loss never fell; lower start_lr)"
    )


def test_suggestion_uses_the_log_lr_spacing_not_the_index():
    # uneven steps: slopes per log10(lr) are -1.0, -0.1 / log10(1.1) = -2.42, -0.46
    # (reported at the left point; per index they would be -1.0, -0.1, -0.9)
    lrs = [1e-4, 1e-3, 1.1e-3, 1e-1, 1.0]
    assert suggest_lr(lrs, [3.0, 2.0, 1.9, 1.0, 5.0]) == 1e-3


def test_suggestion_accepts_any_real_numbers():
    lrs = [decimal.Decimal("0.001"), decimal.Decimal("0.01"), decimal.Decimal("0.1")]
    losses = [decimal.Decimal("2"), decimal.Decimal("1"), decimal.Decimal("3")]
    assert suggest_lr(lrs, losses) == 0.001


def test_suggestion_skip_start_edges():
    lrs = [10.0**e for e in range(-5, 1)]
    loss = [2.0, 1.0, 0.5, 3.0, 2.0, 1.9]
    # the last two points alone still form a slope
    assert suggest_lr(lrs, loss, skip_start=4) == 1e-1
    # nothing left after skip_start: the whole curve is used
    assert suggest_lr(lrs, loss, skip_start=5) == 1e-5
    assert suggest_lr(lrs, loss, skip_start=6) == 1e-5
    assert suggest_lr(lrs, loss, skip_start=60) == 1e-5


def test_suggestion_with_infinite_losses_warns_nothing(recwarn):
    lrs = [10.0**e for e in range(-5, 1)]
    inf = float("inf")
    assert suggest_lr(lrs, [2.0, 1.0, inf, inf, 0.5, 9.0]) == 1e-5
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("bad", [2.5, True, "1", -1])
def test_suggestion_skip_start_must_be_a_non_negative_integer(bad):
    with pytest.raises(ValueError) as e:
        suggest_lr([1e-3, 1e-2], [1.0, 0.5], skip_start=bad)
    assert str(e.value) == f"skip_start: expected an integer >= 0, got {bad!r}"


def test_diverged_at_is_a_strict_ratio_to_the_best_so_far():
    # beta 0: the smoothed loss is the raw loss
    assert _diverged_at([1.0, 4.0, 0.5, 2.0], 0.0, 4.0) is None  # 4 is not > 4 x 1
    assert _diverged_at([1.0, 4.0, 0.5, 2.01], 0.0, 4.0) == 3
    assert _diverged_at([1.0, float("nan")], 0.0, 4.0) == 1
    # bias-corrected EMA, beta 0.5: 1, (0.25 + 4.5) / 0.75 = 6.33 > 4 x 1
    assert _diverged_at([1.0, 9.0], 0.5, 4.0) == 1
    assert _diverged_at([1.0, 9.0], 0.5, 7.0) is None


def _quadratic(n=64, **kwargs):
    """loss(w) = w^2 on x = 1, y = 0: plain SGD gives w' = w (1 - 2 lr)."""
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    kwargs.setdefault("optimizer", "sgd")
    trainer = brisk.Trainer(net, loss="mse", seed=0, **kwargs)
    return trainer, torch.ones(n, 1), torch.zeros(n, 1)


def _hand_sweep(lrs, factor=1.0):
    """Raw losses w_i^2 of the quadratic, w_0 = 1, w' = w (1 - 2 factor lr)."""
    w, out = 1.0, []
    for lr in lrs:
        out.append(w * w)
        w *= 1 - 2 * factor * lr
    return out


def _ema(raw, beta):
    avg, out = 0.0, []
    for i, v in enumerate(raw):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def _first_divergence(raw, beta, diverge):
    best = math.inf
    for i, s in enumerate(_ema(raw, beta)):
        if not math.isfinite(s) or s > diverge * best:
            return i
        best = min(best, s)
    return None


def test_defaults_sweep_1e_7_to_10_in_100_steps():
    trainer, x, y = _quadratic()
    with torch.no_grad():
        trainer.module.weight.fill_(1.0)
    x = x * 1e-3  # curvature 2e-6: stable at every rate up to 10, no divergence
    r = lr_find(trainer, x, y)
    assert len(r.lrs) == 100
    assert r.lrs == pytest.approx([1e-7 * 1e8 ** (i / 99) for i in range(100)], rel=1e-12)
    assert r.lrs[-1] == pytest.approx(10.0, rel=1e-12)


def test_quadratic_sweep_matches_the_hand_recurrence_and_default_diverge():
    trainer, x, y = _quadratic()
    # rates 0.95..1.2: factors (1 - 2 lr)^2 from 0.81 to 1.96, a slow blow-up, where
    # "4 x the best" and "5 x the best" are reached at different steps
    r = lr_find(trainer, x, y, start_lr=0.95, end_lr=1.2, num_steps=60, batch_size=64)
    lrs = [0.95 * (1.2 / 0.95) ** (i / 59) for i in range(60)]
    raw = _hand_sweep(lrs)
    stop = _first_divergence(raw, 0.98, 4.0)
    assert stop is not None and _first_divergence(raw, 0.98, 5.0) != stop
    assert len(r.lrs) == stop + 1
    assert r.raw_losses == pytest.approx(raw[: stop + 1], rel=1e-4)
    assert r.losses == pytest.approx(_ema(raw[: stop + 1], 0.98), rel=1e-4)


def test_smooth_zero_and_two_steps_are_allowed_and_skip_nothing():
    # lrs 0.4, 0.8, 1.6, 3.2: loss factors (1 - 2 lr)^2 = 0.04, 0.36, 4.84, ...
    # raw 1, 0.04, 0.0144, 0.0697: steepest drop at step 0 (no points skipped at smooth 0)
    trainer, x, y = _quadratic()
    r = lr_find(trainer, x, y, start_lr=0.4, end_lr=3.2, num_steps=4, smooth=0.0, batch_size=64)
    assert r.raw_losses == pytest.approx([1.0, 0.04, 0.0144, 0.069696], rel=1e-4)
    assert r.losses == r.raw_losses
    assert r.suggestion == pytest.approx(0.4)
    r = lr_find(trainer, x, y, start_lr=0.1, end_lr=0.2, num_steps=2, batch_size=64)
    assert r.lrs == pytest.approx([0.1, 0.2]) and r.raw_losses == pytest.approx([1.0, 0.64])


def test_skip_is_the_number_of_points_where_bias_correction_dominates():
    # smooth 0.7: 0.7**(i+1) > 1/2 only for i = 0, so one point is skipped
    trainer, x, y = _quadratic()
    r = lr_find(trainer, x, y, start_lr=0.4, end_lr=3.2, num_steps=4, smooth=0.7, batch_size=64)
    s = _ema([1.0, 0.04, 0.0144, 0.069696], 0.7)
    assert r.losses == pytest.approx(s, rel=1e-4)
    assert s[0] - s[1] > s[1] - s[2] > 0  # the skipped first step would be the steepest
    assert r.suggestion == pytest.approx(0.8)


def test_accumulated_steps_on_three_batches():
    """accumulate=2 on 3 batches: steps are {b0, b1} and the short group {b2}, each the
    mean gradient of its samples: the same w' = w (1 - 2 lr) per step."""
    trainer, x, y = _quadratic(n=96, accumulate=2)
    r = lr_find(trainer, x, y, start_lr=1e-2, end_lr=0.3, num_steps=12, batch_size=32)
    lrs = [1e-2 * 30 ** (i / 11) for i in range(12)]
    assert r.raw_losses == pytest.approx(_hand_sweep(lrs), rel=1e-4)


def test_one_batch_per_step_without_accumulation_at_batch_size_1_and_default_32():
    trainer, x, y = _quadratic(n=64)
    lrs = [1e-2 * 10 ** (i / 9) for i in range(10)]
    r = lr_find(trainer, x, y, start_lr=1e-2, end_lr=0.1, num_steps=10)
    assert r.raw_losses == pytest.approx(_hand_sweep(lrs), rel=1e-4)
    r = lr_find(trainer, x[:4], y[:4], start_lr=1e-2, end_lr=0.1, num_steps=10, batch_size=1)
    assert r.raw_losses == pytest.approx(_hand_sweep(lrs), rel=1e-4)


class _Recorder(torch.nn.Module):
    """Identity-ish model that records which samples each forward pass saw."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.seen = []

    def forward(self, x):
        if self.training:
            self.seen.append(x[:, 0].tolist())
        return x[:, :1] * self.w


def test_batches_are_shuffled_like_fit_epoch_by_epoch():
    x = torch.arange(40, dtype=torch.float32).reshape(-1, 1) / 1000
    y = torch.zeros(40, 1)
    m = _Recorder()
    t = brisk.Trainer(m, optimizer="sgd", loss="mse", seed=3)
    lr_find(t, x, y, start_lr=1e-4, end_lr=1e-3, num_steps=12, batch_size=10)
    swept = m.seen
    m.seen = []
    t.fit(x, y, epochs=3, batch_size=10, verbose=0)
    assert swept == m.seen[:12]
    epochs = [sorted(sum(swept[i : i + 4], [])) for i in (0, 4)]
    assert epochs[0] == epochs[1] == sorted(x[:, 0].tolist())
    assert sum(swept[:4], []) != x[:, 0].tolist()  # shuffled
    assert swept[:4] != swept[4:8]  # reshuffled each epoch


def test_without_a_seed_the_shuffle_seed_comes_from_the_global_rng():
    x = torch.arange(40, dtype=torch.float32).reshape(-1, 1) / 1000
    y = torch.zeros(40, 1)
    runs = []
    for seed in (None, "drawn"):
        torch.manual_seed(11)
        if seed == "drawn":
            seed = int(torch.randint(0, 2**31 - 1, ()))
        m = _Recorder()
        t = brisk.Trainer(m, optimizer="sgd", loss="mse", seed=seed)
        lr_find(t, x, y, start_lr=1e-4, end_lr=1e-3, num_steps=4, batch_size=10)
        runs.append(m.seen)
    assert runs[0] == runs[1]


def test_a_given_seed_ignores_the_global_rng():
    x = torch.arange(40, dtype=torch.float32).reshape(-1, 1) / 1000
    y = torch.zeros(40, 1)
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        m = _Recorder()
        t = brisk.Trainer(m, optimizer="sgd", loss="mse", seed=7)
        lr_find(t, x, y, start_lr=1e-4, end_lr=1e-3, num_steps=4, batch_size=10)
        runs.append(m.seen)
    assert runs[0] == runs[1]


def test_losses_are_read_every_10_steps_so_at_most_9_steps_are_wasted():
    trainer, x, y = _quadratic()
    lrs = [0.3 * (30 / 0.3) ** (i / 24) for i in range(25)]
    stop = _first_divergence(_hand_sweep(lrs), 0.98, 4.0)
    assert stop is not None and stop % 10 != 9  # divergence seen at the next multiple of 10
    calls = []

    def count(mod, *args):
        if mod.training:  # not the set-up forward pass
            calls.append(1)

    trainer.module.register_forward_hook(count)
    r = lr_find(trainer, x, y, start_lr=0.3, end_lr=30.0, num_steps=25, batch_size=64)
    assert len(r.lrs) == stop + 1
    assert len(calls) == min(25, (stop // 10 + 1) * 10)


def _bad(**kwargs):
    trainer, x, y = _quadratic()
    with pytest.raises((ValueError, TypeError)) as e:
        lr_find(trainer, x, y, **kwargs)
    return str(e.value)


def test_argument_messages():
    assert _bad(end_lr=-1) == "end_lr: expected a number > 0.0, got -1.0"
    assert _bad(start_lr=0) == "start_lr: expected a number > 0.0, got 0.0"
    assert _bad(smooth=-0.1) == "smooth: expected a number >= 0.0, got -0.1"
    assert _bad(smooth=1.0) == "smooth: expected a number in [0, 1), got 1.0"
    assert _bad(diverge=1) == "diverge: expected a number > 1.0, got 1.0"
    assert _bad(end_lr=1e-8) == "end_lr: expected a finite rate above start_lr=1e-07, got 1e-08"
    assert _bad(num_steps=1) == "num_steps: expected an integer >= 2, got 1"
    assert _bad(batch_size=2.5) == "batch_size: expected a positive integer, got 2.5"
    assert _bad(batch_size=True) == "batch_size: expected a positive integer, got True"
    assert _bad(batch_size=0) == "batch_size: expected a positive integer, got 0"
    assert _bad(plot=3) == "plot: expected a file path or None, got int"
    x = torch.ones(8, 1)
    with pytest.raises(TypeError) as e:
        lr_find(torch.nn.Linear(1, 1), x, x)
    assert str(e.value) == (
        "trainer: expected a brisk.Trainer or a compiled brisk.Sequential, got Linear"
    )
    with pytest.raises(ValueError) as e:
        lr_find(brisk.Trainer(torch.nn.Linear(1, 1), loss=None), x, x)
    assert str(e.value) == "loss: this Trainer has no loss; pass loss= to run lr_find"


# ----------------------------------------------------------------------------- the plot


def _captured_plot(monkeypatch, tmp_path, result):
    """plot_lr_find's figure, captured at savefig (the PNG itself is written too)."""
    from matplotlib.figure import Figure

    from brisk.engine.lr_find import plot_lr_find

    seen = {}
    real = Figure.savefig

    def spy(self, fname, *args, **kwargs):
        seen.update(fig=self, fname=fname, kwargs=kwargs)
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    path = tmp_path / "lr.png"
    plot_lr_find(result, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert seen["fname"] == str(path) and seen["kwargs"] == {"format": "png"}
    return seen["fig"]


def test_plot_shows_raw_and_smoothed_loss_the_suggestion_and_a_clipped_y_range(
        monkeypatch, tmp_path):
    import matplotlib.colors as mcolors

    from brisk.engine.lr_find import LRFindResult

    lrs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    losses = [2.0, 1.8, 1.2, 1.5, 9.0]
    raw = [2.1, 1.6, 1.0, 2.5, 30.0]
    fig = _captured_plot(monkeypatch, tmp_path,
                         LRFindResult(lrs=lrs, losses=losses, raw_losses=raw, suggestion=1e-3))
    assert tuple(fig.get_size_inches()) == (6.0, 4.0) and fig.dpi == 100
    (ax,) = fig.axes
    lines = ax.get_lines()
    raw_line, smooth_line, vline, point = lines
    assert list(raw_line.get_xdata()) == lrs and list(raw_line.get_ydata()) == raw
    assert list(smooth_line.get_xdata()) == lrs and list(smooth_line.get_ydata()) == losses
    assert mcolors.to_hex(raw_line.get_color()) == mcolors.to_hex("0.75")
    assert raw_line.get_linewidth() == 0.8 and raw_line.get_label() == "batch loss"
    assert mcolors.to_hex(smooth_line.get_color()) == mcolors.to_hex("C0")
    assert smooth_line.get_linewidth() == 1.8 and smooth_line.get_label() == "smoothed loss"
    assert list(vline.get_xdata()) == [1e-3, 1e-3]
    assert mcolors.to_hex(vline.get_color()) == mcolors.to_hex("C3")
    assert vline.get_linestyle() == "--" and vline.get_linewidth() == 1
    assert list(point.get_xdata()) == [1e-3] and list(point.get_ydata()) == [1.8]
    assert point.get_marker() == "o" and mcolors.to_hex(point.get_color()) == mcolors.to_hex("C3")
    assert point.get_label() == "suggestion 0.001"
    # y range: from the lowest finite loss (raw included) to min(max smoothed, 2 x first),
    # padded by 5% of the span: lo = 1.0, hi = min(9.0, 4.0) = 4.0, pad = 0.15
    assert ax.get_ylim() == pytest.approx((1.0 - 0.15, 4.0 + 0.15))
    assert ax.get_xscale() == "log"
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
        "learning rate", "training loss", "learning-rate range test")
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "batch loss", "smoothed loss", "suggestion 0.001"]
    assert legend._loc == 0  # 'best'


def test_plot_y_range_with_a_flat_curve_infinite_raw_losses_and_no_suggestion(
        monkeypatch, tmp_path):
    from brisk.engine.lr_find import LRFindResult

    fig = _captured_plot(monkeypatch, tmp_path, LRFindResult(
        lrs=[1e-3, 1e-2, 1e-1], losses=[3.0, 3.0, 3.0], raw_losses=[3.0, float("inf"), 3.0],
        suggestion=None))
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 2  # no suggestion marker, no vertical line
    pad = 0.05 * 3.0 + 1e-12  # a flat curve: 5% of the value itself
    assert ax.get_ylim() == pytest.approx((3.0 - pad, 3.0 + pad))
    fig = _captured_plot(monkeypatch, tmp_path, LRFindResult(
        lrs=[1e-3, 1e-2], losses=[float("nan"), float("inf")], raw_losses=[1.0, 2.0],
        suggestion=None))
    (ax,) = fig.axes
    # no finite smoothed value: the range is matplotlib's own (data 1..2, 5% margins)
    assert ax.get_ylim() == pytest.approx((0.95, 2.05))
