"""ProgressBar: what a user reads (Keras verbosity): verbose=1 a tqdm bar per epoch,
refreshed on a clock (every ``interval`` seconds) with the running logs; verbose=2 one
line per epoch, ``Epoch e/E - {s}s - {ms}ms/step - k: v.vvvv``. The clock is faked, so
every expected value below is written out by hand."""

import fcntl
import io
import os
import pty
import select
import struct
import termios
import time
import types

import pytest
from tqdm.auto import tqdm

from brisk.engine import progress
from brisk.engine.progress import ProgressBar, format_logs


@pytest.fixture
def clock(monkeypatch):
    """A fake ``time.perf_counter`` for the progress module: set ``clock.now``."""
    fake = types.SimpleNamespace(now=100.0)
    fake.perf_counter = lambda: fake.now
    monkeypatch.setattr(progress, "time", fake)
    return fake


def _bar(steps=5, epochs=3, **kwargs):
    pb = ProgressBar(**kwargs)
    pb.set_params({"epochs": epochs, "steps": steps, "verbose": pb.verbose})
    return pb


def _shown(buf):
    """The last thing tqdm drew: every redraw starts with a carriage return (and is
    padded with spaces over a longer previous line)."""
    return buf.getvalue().split("\r")[-1].rstrip()


def test_format_logs_is_keras_style():
    assert format_logs({"loss": 0.123456, "acc": 0.9}) == "loss: 0.1235 - acc: 0.9000"
    assert format_logs({}) == ""


def test_bar_counts_steps_and_shows_logs_on_the_default_quarter_second_clock(clock):
    buf = io.StringIO()
    pb = _bar(stream=buf)  # default verbose=1, interval=0.25
    clock.now = 100.0
    pb.on_epoch_begin(0)
    assert _shown(buf).startswith("Epoch 1/3:   0%|")
    assert "0/5" in _shown(buf)

    drawn = buf.getvalue()
    clock.now = 100.1  # 0.1 s < 0.25 s: no report (a report is a device sync)
    pb.on_train_batch_end(0, {"loss": 0.9})
    assert buf.getvalue() == drawn

    clock.now = 100.25  # exactly one interval later: report
    pb.on_train_batch_end(1, {"loss": 0.5})
    line = _shown(buf)
    assert line.startswith("Epoch 1/3:  40%|") and " 2/5 [" in line
    assert line.endswith(", loss: 0.5000]")
    assert "step/s" in line or "s/step" in line  # the unit is a step, not tqdm's "it"

    drawn = buf.getvalue()
    clock.now = 100.3  # 0.05 s after the last report: none
    pb.on_train_batch_end(2, {"loss": 0.4})
    assert buf.getvalue() == drawn

    clock.now = 100.5  # 0.25 s after the last report
    pb.on_train_batch_end(3, {"loss": 0.25})
    line = _shown(buf)
    assert line.startswith("Epoch 1/3:  80%|") and " 4/5 [" in line
    assert line.endswith(", loss: 0.2500]")

    clock.now = 101.0
    pb.on_epoch_end(0, {"loss": 0.125, "val_loss": 0.5})
    out = buf.getvalue()
    assert out.endswith("\n")  # leave=True: the finished bar stays on screen
    line = _shown(buf)
    assert line.startswith("Epoch 1/3: 100%|") and " 5/5 [" in line
    assert line.endswith(", loss: 0.1250 - val_loss: 0.5000]")

    # the bar is released: a stray batch hook after the epoch draws nothing
    clock.now = 200.0
    pb.on_train_batch_end(4, {"loss": 0.1})
    assert buf.getvalue() == out

    # the next epoch starts its own bar from zero
    clock.now = 300.0
    pb.on_epoch_begin(1)
    assert _shown(buf).startswith("Epoch 2/3:   0%|") and " 0/5 [" in _shown(buf)


def test_every_batch_reported_then_epoch_end_adds_nothing_and_unknown_length(clock):
    """With no step count (a loader without len), the bar ends at the batches seen."""
    buf = io.StringIO()
    pb = _bar(steps=None, epochs=2, interval=0.0, stream=buf)
    pb.on_epoch_begin(1)
    for i in range(3):
        clock.now += 1.0
        pb.on_train_batch_end(i, None)
        assert _shown(buf).startswith(f"Epoch 2/2: {i + 1}step [")
    pb.on_epoch_end(1, {"loss": 2.0})
    line = _shown(buf)
    assert line.startswith("Epoch 2/2: 3step [") and line.endswith(", loss: 2.0000]")


def test_default_streams(clock, capsys):
    pb = _bar()  # verbose=1 draws on stderr
    pb.on_epoch_begin(0)
    pb.on_epoch_end(0, {"loss": 1.0})
    err = capsys.readouterr()
    assert err.out == "" and "Epoch 1/3: 100%|" in err.err and "5/5" in err.err

    pb = _bar(verbose=2, steps=4)  # verbose=2 prints lines on stdout
    clock.now = 100.0
    pb.on_epoch_begin(0)
    clock.now = 102.0
    pb.on_epoch_end(0, {"loss": 1.0})
    out = capsys.readouterr()
    assert out.err == "" and out.out == "Epoch 1/3 - 2.0s - 500.00ms/step - loss: 1.0000\n"


def test_given_stream_gets_everything(clock, capsys):
    buf = io.StringIO()
    pb = _bar(stream=buf)
    pb.on_epoch_begin(0)
    pb.on_epoch_end(0, {})
    assert "Epoch 1/3: 100%|" in buf.getvalue()
    buf2 = io.StringIO()
    pb = _bar(verbose=2, stream=buf2)
    pb.on_epoch_begin(0)
    pb.on_epoch_end(0, {"loss": 1.0})
    assert buf2.getvalue().startswith("Epoch 1/3 - ")
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    "steps, elapsed, logs, expected",
    [
        (4, 2.0, {"loss": 0.123456, "acc": 0.9},
         "Epoch 2/3 - 2.0s - 500.00ms/step - loss: 0.1235 - acc: 0.9000"),
        (8, 0.5, None, "Epoch 2/3 - 0.5s - 62.50ms/step - "),
        # unknown step count: per-step time is the epoch time
        (None, 1.0, {"loss": 3.0}, "Epoch 2/3 - 1.0s - 1000.00ms/step - loss: 3.0000"),
    ],
)
def test_verbose_2_prints_one_keras_line_per_epoch(clock, steps, elapsed, logs, expected):
    buf = io.StringIO()
    pb = _bar(verbose=2, steps=steps, stream=buf)
    clock.now = 50.0
    pb.on_epoch_begin(1)
    for i in range(3):  # no bar: batch hooks draw nothing
        clock.now += elapsed / 4
        pb.on_train_batch_end(i, {"loss": 9.0})
    assert buf.getvalue() == ""
    clock.now = 50.0 + elapsed
    pb.on_epoch_end(1, logs)
    assert buf.getvalue() == expected + "\n"


def test_verbose_2_line_is_flushed_at_once(clock):
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8")  # buffered: only flush reaches raw
    pb = _bar(verbose=2, steps=1, stream=stream)
    pb.on_epoch_begin(0)
    clock.now += 0.25
    pb.on_epoch_end(0, {})
    assert raw.getvalue() == b"Epoch 1/3 - 0.2s - 250.00ms/step - \n"


def test_bar_stays_on_screen_inside_an_outer_tqdm_loop(clock):
    """Keras leaves one finished line per epoch; tqdm's default (leave=None) would erase
    a nested bar, e.g. under a user's own tqdm loop over trials."""
    buf = io.StringIO()
    outer = tqdm(total=2, desc="trials", file=buf)
    try:
        pb = _bar(steps=2, stream=buf)
        pb.on_epoch_begin(0)
        pb.on_epoch_end(0, {"loss": 1.0})
        out = buf.getvalue()
        last = out.split("\r")[-1]
        assert last.endswith("\n")
        assert last.startswith("Epoch 1/3: 100%|") and last.rstrip().endswith(", loss: 1.0000]")
    finally:
        outer.close()


def test_bar_follows_the_terminal_width(clock):
    """dynamic_ncols: on a terminal the bar is as wide as the window, even after a resize."""
    master, slave = pty.openpty()
    term = os.fdopen(slave, "w")

    def resize(cols):
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))

    def last_line():
        # The pty hands written bytes to the master side asynchronously (under load they
        # can arrive late): read until nothing more comes for 0.2 s, at most 5 s in all.
        term.flush()
        chunks, deadline = [], time.monotonic() + 5.0
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if chunks:
                    break
                continue
            chunks.append(os.read(master, 1 << 16))
        text = b"".join(chunks).decode()
        return text.replace("\r\n", "\n").split("\r")[-1].rstrip()

    try:
        resize(101)
        pb = _bar(steps=4, interval=0.0, stream=term)
        pb.on_epoch_begin(0)
        clock.now += 1
        pb.on_train_batch_end(0, {"loss": 1.0})
        assert len(last_line()) == 100  # tqdm leaves the last column free
        resize(71)
        clock.now += 1
        pb.on_train_batch_end(1, {"loss": 1.0})
        assert len(last_line()) == 70
        pb.on_epoch_end(0, {"loss": 1.0})
        assert len(last_line()) == 70
    finally:
        term.close()
        os.close(master)
