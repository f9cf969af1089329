"""brisk.profile / brisk profile: the time split adds up to brisk's own step time, the FLOPs
match a hand count, each switch's speedup comes from its timed windows (a fake clock), and
the model profiled is a copy."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import brisk
from brisk.bench import profile as prof
from brisk.cli import main


def _mlp(width=256, precision="fp32", optimizer="adam"):
    brisk.utils.set_random_seed(0)
    m = brisk.Sequential([brisk.layers.Flatten(input_shape=(28, 28)),
                          brisk.layers.Dense(width, activation="relu"),
                          brisk.layers.Dense(width, activation="relu"),
                          brisk.layers.Dense(10, activation="softmax")])
    m.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
              metrics=["accuracy"], precision=precision)
    return m


def _data(n=4096):
    rng = np.random.default_rng(0)
    return rng.random((n, 28, 28), dtype=np.float32), rng.integers(0, 10, n)


class FakeClock:
    """Each timed window (a start and an end reading) lasts the next of ``durations``."""

    def __init__(self, durations):
        self.durations, self.t, self.calls = list(durations), 0.0, 0

    def __call__(self):
        self.calls += 1
        if self.calls % 2 == 0:
            self.t += self.durations.pop(0)
        return self.t


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BRISK_CACHE_DIR", str(tmp_path / "cache"))  # the CPU peak, not in ~


def test_the_flops_per_sample_match_a_hand_count_for_a_dense_stack():
    x, y = _data(512)
    r = brisk.profile(_mlp(), x, y, batch_size=128, steps=2, warmup=1, reps=1, split=False,
                      switches=None)
    fwd = 2 * (784 * 256 + 256 * 256 + 256 * 10)  # the matmuls (biases and loss not counted)
    assert r.flops_per_sample_forward == fwd
    # backward: the weight gradients (as many FLOPs as the forward) and the input gradients
    # of every layer but the first (its input needs none)
    assert r.flops_per_sample_train == 3 * fwd - 2 * 784 * 256
    assert r.flops_per_second == pytest.approx(r.flops_per_sample_train * 128 / r.step_time)


def test_the_split_adds_up_to_the_loops_step_time_within_10_percent():
    """Each phase timed alone, the device synchronised between them, against brisk's own fit
    loop over the same steps (medians of 5 windows; 10 fresh runs on an AMD EPYC gave
    0.98-1.03, one of 6 earlier runs with 3 windows went over)."""
    x, y = _data(8192)
    ratios = []
    for _ in range(5):  # a timing: up to 5 measurements, one within 10% (the suite's own
        # load once pushed one outside: windows spread 2.4-3.3 ms late in a CI run; another
        # process's load pushed 3 in a row to 0.35-0.73 once)
        r = brisk.profile(_mlp(), x, y, batch_size=128, steps=40, warmup=5, reps=5,
                          switches=None)
        assert set(r.split) == set(prof.PHASES)
        assert all(v >= 0 for v in r.split.values())
        assert r.split["forward"] > 0 and r.split["backward"] > 0 and r.split["optimizer"] > 0
        ratios.append(r.split_total / r.step_time)
        if abs(ratios[-1] - 1) < 0.10:
            break
    assert min(abs(q - 1) for q in ratios) < 0.10, (ratios, r.split, r.step_times)


def test_each_switch_speedup_comes_from_its_timed_windows():
    x, y = _data(2048)
    # windows in order: 2 baseline, then per switch one switch window and one baseline
    # window (alternating); seconds per window of 8 steps
    clock = FakeClock([4.0, 4.0, 2.0, 4.0, 1.0, 4.0, 8.0, 4.0])
    r = brisk.profile(_mlp(64), x, y, batch_size=64, steps=8, warmup=1, reps=2, split=False,
                      switches=["bf16-autocast", "batch-x2", "channels-last"], clock=clock)
    assert not clock.durations  # every window read the clock twice, in this order
    assert r.step_time == 4.0 / 8 and r.samples_per_second == 64 * 8 / 4.0
    got = {s["name"]: s for s in r.switches}
    assert got["bf16-autocast"]["speedup"] == 2.0
    assert got["bf16-autocast"]["samples_per_second"] == 64 * 8 / 2.0
    # batch x2: 128 samples per step, 8 steps in 1 s, against 64 per step in 4 s
    assert got["batch-x2"]["speedup"] == (128 * 8 / 1.0) / (64 * 8 / 4.0)
    assert got["channels-last"]["speedup"] is None and got["channels-last"]["note"] == "no Conv2d"
    # both winners, timed together: 8 s for 8 steps of 128 against 4 s for 8 of 64
    assert r.best == {"names": ["bf16-autocast", "batch-x2"], "speedup": 1.0,
                      "samples_per_second": 128.0}


def test_a_switch_runs_what_it_says(monkeypatch):
    x, y = _data(1024)
    seen = []
    real = prof._rate

    def spy(t, xs, y_, bs, steps, warmup, clock):
        out = real(t, xs, y_, bs, steps, warmup, clock)
        opt = t.optimizer
        seen.append((t.precision.mode, bs, opt.defaults.get("fused"), type(xs).__name__,
                     opt.param_groups[0]["lr"]))
        return out

    monkeypatch.setattr(prof, "_rate", spy)
    opt = lambda p: torch.optim.SGD(p, lr=0.1)  # noqa: E731 - a torch optimizer, not fused
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=32)
    # every window 1 s: only batch-x2 wins (twice the samples), so no combined run follows
    brisk.profile(_mlp(64, optimizer=opt), loader, batch_size=32, steps=4, warmup=1, reps=2,
                  split=False, clock=FakeClock([1.0] * 10),
                  switches=["bf16-autocast", "batch-x2", "fused-optimizer", "device-loader"])
    assert seen[0][0] == "bf16-mixed"
    assert seen[1][1] == 64 and seen[1][4] == pytest.approx(0.2)  # batch x2, lr x2
    assert seen[2][2] is True  # fused=True
    assert seen[3][3] == "DeviceLoader"
    assert all(s[0] == "fp32" for s in seen[1:]) and len(seen) == 4


def test_the_model_profiled_is_a_copy():
    m = _mlp(64)
    x, y = _data(1024)
    m.fit(x, y, batch_size=64, epochs=1, verbose=0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt_state = {k: v.clone() for k, v in m.trainer.optimizer.state_dict()["state"][0].items()}
    step = m.trainer.global_step
    brisk.profile(m, x, y, batch_size=64, steps=3, warmup=1, reps=1, switches=["batch-x2"])
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all(torch.equal(opt_state[k], v)
               for k, v in m.trainer.optimizer.state_dict()["state"][0].items())
    assert m.trainer.global_step == step


@pytest.mark.parametrize("kwargs, error, match", [
    ({"steps": 0}, ValueError, "steps: expected a positive integer"),
    ({"steps": 100}, ValueError, r"steps: the data holds 16 full batches of 64; pass steps "
                                 r"and warmup <= 16"),
    ({"warmup": -1}, ValueError, r"warmup: expected an int >= 0, got -1"),
    ({"switches": ["turbo"]}, ValueError, r"switches: unknown \['turbo'\]; known: channels-last"),
    ({"switches": 5}, ValueError, "switches: expected 'all', None or a list"),
    ({"switches": "compile,compile"}, ValueError, r"switches: each name once, got \['compile', "
                                                  r"'compile'\]"),
])
def test_bad_arguments_are_refused_before_anything_runs(kwargs, error, match):
    x, y = _data(1024)
    with pytest.raises(error, match=match):
        brisk.profile(_mlp(64), x, y, **{"batch_size": 64, **kwargs})
    with pytest.raises(TypeError, match="model: expected a compiled brisk.Sequential"):
        brisk.profile(nn.Linear(2, 2), x, y)


def test_cpu_peak_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("BRISK_CACHE_DIR", str(tmp_path))
    first = prof.cpu_peak_flops(torch.float32, n=256, reps=2)
    assert first > 1e8  # any CPU does 0.1 GFLOP/s
    table = json.loads((tmp_path / "peak_flops.json").read_text())
    assert list(table.values()) == [first]
    key = next(iter(table))
    table[key] = 123.0  # the cache is what is read next time
    (tmp_path / "peak_flops.json").write_text(json.dumps(table))
    assert prof.cpu_peak_flops(torch.float32, n=256, reps=2) == 123.0


def test_mfu_uses_a_published_peak_on_a_known_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H100 80GB HBM3")
    assert prof._peak(torch.device("cuda"), "bf16-mixed") == (
        989e12, "H100 datasheet, dense 16-bit tensor core")
    assert prof._peak(torch.device("cuda"), "fp32")[0] == 67e12
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Some GPU")
    assert prof._peak(torch.device("cuda"), "fp32") == (None, "no published peak known for "
                                                                "'Some GPU'")


def test_contention_is_reported_when_windows_spread_or_the_load_is_high(monkeypatch):
    monkeypatch.setattr(prof.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    assert prof._contention([1.0, 1.1, 1.2], torch.device("cpu")) is None
    assert prof._contention([1.0, 1.6], torch.device("cpu")).startswith(
        "the step time varied 1.6x between windows")
    monkeypatch.setattr(prof, "usable_cores", lambda: 2)
    monkeypatch.setattr(prof.os, "getloadavg", lambda: (3.0, 1.0, 1.0))
    assert "load average 3.0 on 2 usable cores" in prof._contention([1.0], torch.device("cpu"))


def test_brisk_profile_cli_writes_json_png_and_a_trace(tmp_path, capsys):
    out, trace = tmp_path / "p", tmp_path / "trace.json"
    assert main(["profile", "--dataset", "digits", "--model", "mlp", "--steps", "5",
                 "--warmup", "2", "--reps", "1", "--switches", "batch-x2",
                 "--out", str(out), "--trace", str(trace)]) == 0
    text = capsys.readouterr().out
    assert "where a step's time goes" in text and "batch-x2" in text
    report = json.loads((out / "profile.json").read_text())
    assert report["batch_size"] == 32 and report["steps"] == 5
    assert (out / "profile.png").read_bytes()[:4] == b"\x89PNG"
    assert "traceEvents" in json.loads(trace.read_text())
    assert main(["profile", "--switches", "warp"]) == 2
    assert "--switches: expected 'all', 'none' or names" in capsys.readouterr().err


def test_recipes_state_the_batch_size_they_fit_with():
    import inspect

    for r in brisk.recipes.RECIPES.values():
        assert f"batch_size={r.batch_size}," in inspect.getsource(r.train), r.name


def test_channels_last_applies_to_conv_models_not_yet_in_that_layout():
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 3))
    assert not prof._is_channels_last(net)
    net.to(memory_format=torch.channels_last)
    assert prof._is_channels_last(net)  # the 1-channel conv's weight is both layouts
    assert not prof._is_channels_last(nn.Sequential(nn.Linear(2, 2)))


def test_fewer_threads_is_timed_at_half_the_count_and_copies_run_at_one_count(monkeypatch):
    x, y = _data(1024)
    seen = []
    real = prof._rate
    monkeypatch.setattr(prof, "_rate", lambda t, *a: (seen.append(t.threads), real(t, *a))[1])
    monkeypatch.setattr(prof, "usable_cores", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    r = brisk.profile(_mlp(64), x, y, batch_size=64, steps=3, warmup=1, reps=1, split=False,
                      switches="fewer-threads")  # the command line's comma form works too
    assert seen == [1] and r.threads == 2
    assert r.switches[0]["note"] == "threads=1 (of 2): a busy machine's cores"
    assert prof._clone(_mlp(64).trainer).threads == 2  # fixed: never adapted mid-window


def test_a_trace_goes_into_a_new_folder_and_tiny_data_is_refused_clearly(tmp_path):
    x, y = _data(256)
    trace = tmp_path / "new" / "sub" / "t.json"
    brisk.profile(_mlp(64), x, y, batch_size=64, steps=2, warmup=1, reps=1, split=False,
                  switches=None, trace=trace)
    assert "traceEvents" in json.loads(trace.read_text())
    with pytest.raises(ValueError, match=r"^x: fewer samples than one batch of 64"):
        brisk.profile(_mlp(64), x[:10], y[:10], batch_size=64)


def test_profile_refuses_a_recipe_with_model_options(capsys):
    assert main(["profile", "--recipe", "mnist-mlp", "--model", "cnn", "--width", "7"]) == 2
    assert ("--model, --width: a recipe brings its own data, model and optimizer; give "
            "--recipe or these, not both") in capsys.readouterr().err
