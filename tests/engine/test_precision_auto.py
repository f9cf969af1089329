"""precision='auto' on CPU: bf16-mixed where the CPU has native bf16 and the step is big
enough, fp32 elsewhere; the capability is mocked both ways, so these run on any CPU."""

import numpy as np
import pytest
import torch
from torch import nn

import brisk
from brisk.engine import precision as precision_mod
from brisk.engine.precision import AUTO_BF16_MIN_STEP_FLOPS, Precision, resolve_mode
from brisk.layers import Dense, Flatten


@pytest.fixture
def cpu(monkeypatch):
    """Detection on (the suite's conftest fixes 'auto' to fp32); the CPU's bf16 unit is
    what the test sets."""
    monkeypatch.delenv(precision_mod.ENV, raising=False)
    monkeypatch.setattr(precision_mod, "_ANNOUNCED", set())

    def has(unit):
        monkeypatch.setattr(precision_mod, "cpu_native_bf16", lambda: unit)
    return has


def _mlp(width):
    brisk.utils.set_random_seed(0)
    m = brisk.Sequential([Flatten(input_shape=(8, 8)), Dense(width, activation="relu"),
                          Dense(10, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def _data(n=256):
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8), dtype=np.float32), rng.integers(0, 10, n)


def test_a_cpu_without_native_bf16_trains_in_fp32_and_says_why(cpu, capsys):
    cpu(None)
    m = _mlp(4096)
    m.fit(*_data(), batch_size=128, epochs=1, verbose=2)
    p = m.trainer.precision
    assert (p.mode, p.dtype) == ("fp32", None)
    assert "precision: fp32 (the CPU has no native bf16 (no AMX, no AVX512-BF16))" in capsys.readouterr().out


def test_native_bf16_and_a_big_step_choose_bf16_mixed_and_it_trains(cpu, capsys):
    cpu("AMX")
    m = _mlp(4096)  # 2 * (64 * 4096 + 4096 * 10) = 606,208 FLOPs per sample
    x, y = _data(512)
    h = m.fit(x, y, batch_size=128, epochs=3, verbose=2)
    p = m.trainer.precision
    assert p.flops_per_sample == 2 * (64 * 4096 + 4096 * 10)
    assert (p.mode, p.dtype) == ("bf16-mixed", torch.bfloat16)
    out = capsys.readouterr().out
    assert ("precision: bf16-mixed (CPU has AMX; the model's forward is 0.606 MFLOP per "
            "sample, 77.6 MFLOP per batch of 128)") in out
    # real bf16 autocast (on any CPU): the weights stay float32 and the loss falls
    assert m.layers[1].linear.weight.dtype == torch.float32
    assert h.history["loss"][-1] < h.history["loss"][0]


def test_a_small_step_stays_fp32_even_with_native_bf16(cpu, capsys):
    cpu("AVX512-BF16")
    m = _mlp(64)  # 2 * (64 * 64 + 64 * 10) = 9,472 FLOPs per sample
    m.fit(*_data(), batch_size=32, epochs=1, verbose=2)
    p = m.trainer.precision
    assert p.flops_per_sample == 9472
    assert p.mode == "fp32"
    assert ("precision: fp32 (CPU has AVX512-BF16, but the model's forward is 0.00947 MFLOP "
            "per sample, 0.303 MFLOP per batch of 32: under 32 MFLOP per batch") in capsys.readouterr().out


def test_the_threshold_is_per_step_flops_at_its_boundary(cpu):
    cpu("AMX")
    below, at = Precision("auto", "cpu"), Precision("auto", "cpu")
    assert below.pending and at.pending and below.mode is None
    below.decide(AUTO_BF16_MIN_STEP_FLOPS / 64 - 1, 64)
    at.decide(AUTO_BF16_MIN_STEP_FLOPS / 64, 64)
    assert (below.mode, at.mode) == ("fp32", "bf16-mixed")
    at.decide(1.0, 1)  # decided once: later calls change nothing
    assert at.mode == "bf16-mixed"


def test_the_choice_is_printed_once_per_process_and_not_when_quiet(cpu, capsys):
    cpu("AMX")
    m = _mlp(4096)
    m.fit(*_data(), batch_size=128, epochs=1, verbose=0)
    assert "precision:" not in capsys.readouterr().out
    m.fit(*_data(), batch_size=128, epochs=1, verbose=2)
    _mlp(4096).fit(*_data(), batch_size=128, epochs=1, verbose=2)
    assert capsys.readouterr().out.count("precision: bf16-mixed") == 1


def test_evaluate_first_decides_with_its_batch_size(cpu):
    cpu("AMX")
    m = _mlp(512)  # 2 * (64 * 512 + 512 * 10) = 75,776 FLOPs per sample
    x, y = _data()
    m.evaluate(x, y, batch_size=512, verbose=0)  # 38.8 MFLOP per batch
    assert m.trainer.precision.mode == "bf16-mixed"
    m2 = _mlp(512)
    m2.predict(x, batch_size=256, verbose=0)  # 19.4 MFLOP
    assert m2.trainer.precision.mode == "fp32"


def test_explicit_modes_are_never_changed_by_detection(cpu):
    cpu("AMX")
    for mode in ("fp32", "bf16-mixed", "fp16-mixed", "bf16"):
        p = Precision(mode, "cpu")
        assert not p.pending and p.mode == mode
        p.decide(1e12, 512)
        assert p.mode == mode
    m = _mlp(4096)
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", precision="fp32")
    m.fit(*_data(), batch_size=128, epochs=1, verbose=0)
    assert m.trainer.precision.mode == "fp32"


def test_the_environment_variable_fixes_auto_and_is_checked(cpu, monkeypatch):
    cpu("AMX")
    monkeypatch.setenv("BRISK_AUTO_PRECISION", "fp32")
    assert resolve_mode("auto", torch.device("cpu")) == ("fp32", "BRISK_AUTO_PRECISION=fp32")
    cpu(None)
    monkeypatch.setenv("BRISK_AUTO_PRECISION", "bf16-mixed")
    assert Precision("auto", "cpu").mode == "bf16-mixed"
    monkeypatch.setenv("BRISK_AUTO_PRECISION", "bf16")  # any mode but 'auto' itself
    assert Precision("auto", "cpu").mode == "bf16"
    monkeypatch.setenv("BRISK_AUTO_PRECISION", "auto")  # as unset: detect
    assert resolve_mode("auto", torch.device("cpu")) == (
        "fp32", "the CPU has no native bf16 (no AMX, no AVX512-BF16)")
    monkeypatch.setenv("BRISK_AUTO_PRECISION", "fp8")
    with pytest.raises(ValueError, match=r"^BRISK_AUTO_PRECISION: expected one of 'fp32', "
                                         r"'bf16-mixed', 'fp16-mixed', 'bf16', got 'fp8'$"):
        brisk.Trainer(nn.Linear(2, 2))


@pytest.mark.parametrize("written", ["bf16-mixed", "fp32"])
def test_a_pending_auto_takes_the_checkpoints_precision(cpu, tmp_path, written):
    cpu("AMX")
    m = _mlp(64)
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", precision=written)
    m.fit(*_data(), batch_size=32, epochs=1, verbose=0)
    m.trainer.save_checkpoint(tmp_path / "c.pt")
    fresh = _mlp(64)  # auto, still pending: the small step alone would choose fp32
    assert fresh.trainer.precision.pending
    fresh.trainer.load_checkpoint(tmp_path / "c.pt")
    assert fresh.trainer.precision.mode == written
    assert fresh.trainer.precision.reason == "the checkpoint's"
    fresh.fit(*_data(), batch_size=32, epochs=1, verbose=0)  # stays as loaded
    assert fresh.trainer.precision.mode == written


def test_a_decided_mode_still_refuses_another_checkpoints_precision(cpu, tmp_path):
    cpu(None)
    m = _mlp(64)
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", precision="bf16-mixed")
    m.fit(*_data(), batch_size=32, epochs=1, verbose=0)
    m.trainer.save_checkpoint(tmp_path / "c.pt")
    fresh = _mlp(64)
    fresh.fit(*_data(), batch_size=32, epochs=1, verbose=0)  # decided: fp32
    with pytest.raises(ValueError, match="written with 'bf16-mixed', this run uses 'fp32'"):
        fresh.trainer.load_checkpoint(tmp_path / "c.pt")


def test_detection_asks_torch_then_the_linux_flags(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert precision_mod.cpu_native_bf16() == "AMX"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert precision_mod.cpu_native_bf16() == "AVX512-BF16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert precision_mod.cpu_native_bf16() is None
    # a torch without these checks: the CPU flags decide (x86 only)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    monkeypatch.setattr(precision_mod.platform, "machine", lambda: "x86_64")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu amx_bf16\n")
    read = precision_mod._linux_cpu_flags
    assert read(str(cpuinfo)) == {"fpu", "avx2", "avx512f", "avx512_bf16"}  # the first CPU's
    assert read(str(tmp_path / "missing")) == set()
    monkeypatch.setattr(precision_mod, "_linux_cpu_flags", lambda: read(str(cpuinfo)))
    assert precision_mod.cpu_native_bf16() == "AVX512-BF16"
    cpuinfo.write_text("flags\t\t: fpu amx_bf16 avx512_bf16\n")
    assert precision_mod.cpu_native_bf16() == "AMX"
    cpuinfo.write_text("flags\t\t: fpu avx2\n")
    assert precision_mod.cpu_native_bf16() is None
    monkeypatch.setattr(precision_mod.platform, "machine", lambda: "aarch64")
    cpuinfo.write_text("flags\t\t: amx_bf16\n")
    assert precision_mod.cpu_native_bf16() is None


def test_auto_on_cuda_and_other_devices_is_unchanged(cpu, monkeypatch):
    cpu("AMX")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_mode("auto", torch.device("cuda")) == ("bf16-mixed", "the GPU supports bfloat16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_mode("auto", torch.device("cuda")) == ("fp32", "the GPU has no bfloat16")
    assert resolve_mode("auto", torch.device("mps"))[0] == "fp32"
