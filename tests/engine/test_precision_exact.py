"""Exact unit tests of brisk.engine.precision's small parts: the CPU's bf16 detection, the
pure-bf16 master-weight step, the messages 'auto' prints, and the checkpoint state.

Each expected value is computed here independently (float32 arithmetic by hand, the
/proc/cpuinfo text parsed by hand), not read back from the code under test."""

import os
import platform

import pytest
import torch

from brisk.engine import precision as prec_mod
from brisk.engine.precision import Precision

# -- the CPU's bf16 unit --------------------------------------------------------------------

def test_linux_cpu_flags_reads_the_first_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_bf16\n"
                    "bugs\t\t: none\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert prec_mod._linux_cpu_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}


def test_linux_cpu_flags_without_a_flags_line_or_file_is_empty(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\n")
    assert prec_mod._linux_cpu_flags(str(info)) == set()
    assert prec_mod._linux_cpu_flags(str(tmp_path / "missing")) == set()


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="reads Linux's /proc/cpuinfo")
def test_linux_cpu_flags_reads_proc_cpuinfo_by_default():
    with open("/proc/cpuinfo") as f:  # parsed here by hand: the first 'flags' line (x86)
        line = next((ln for ln in f if ln.startswith("flags")), ":")
    assert prec_mod._linux_cpu_flags() == set(line.partition(":")[2].split())


@pytest.mark.parametrize("machine", ["x86_64", "AMD64"])  # AMD64: what Windows reports
@pytest.mark.parametrize("flags, expected", [({"avx2", "avx512_bf16"}, "AVX512-BF16"),
                                             ({"amx_bf16", "avx512_bf16"}, "AMX"),
                                             ({"avx2"}, None)])
def test_without_torchs_detection_the_cpu_flags_decide(monkeypatch, machine, flags, expected):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.setattr(platform, "machine", lambda: machine)
    monkeypatch.setattr(prec_mod, "_linux_cpu_flags", lambda: set(flags))
    assert prec_mod.cpu_native_bf16() == expected


def test_without_torchs_detection_an_arm_cpu_has_none(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(prec_mod, "_linux_cpu_flags", lambda: {"avx512_bf16"})
    assert prec_mod.cpu_native_bf16() is None


# -- 'auto' on a native-bf16 CPU: the decision and what it prints ----------------------------

def _pending(monkeypatch):
    monkeypatch.delenv(prec_mod.ENV, raising=False)
    monkeypatch.setattr(prec_mod, "cpu_native_bf16", lambda: "AVX512-BF16")
    p = Precision("auto", "cpu")
    assert p.pending
    return p


def test_an_undecided_auto_shows_as_auto(monkeypatch):
    assert repr(_pending(monkeypatch)) == "Precision('auto', device='cpu')"
    assert repr(Precision("bf16", "cpu")) == "Precision('bf16', device='cpu')"


def test_decide_says_the_cost_in_mflop_to_three_digits(monkeypatch):
    # 999,500 FLOP is 0.9995 MFLOP: "1" to three digits (a divisor off by one gives 0.999)
    monkeypatch.setattr(prec_mod, "AUTO_BF16_MIN_STEP_FLOPS", 999_500 * 4)
    p = _pending(monkeypatch)
    p.decide(999_500, 3)
    assert p.mode == "fp32"
    assert p.reason == ("CPU has AVX512-BF16, but the model's forward is 1 MFLOP per sample, "
                        "3 MFLOP per batch of 3: under 4 MFLOP per batch, bf16 autocast's "
                        "casts cost more than they save")
    q = _pending(monkeypatch)
    q.decide(999_500, 4)  # exactly the threshold: bf16
    assert (q.mode, q.reason) == ("bf16-mixed", "CPU has AVX512-BF16; the model's forward is "
                                  "1 MFLOP per sample, 4 MFLOP per batch of 4")
    q.decide(1.0, 1)  # decided once
    assert q.mode == "bf16-mixed"


def test_announce_prints_only_what_auto_chose_by_itself(monkeypatch, capsys):
    monkeypatch.setattr(prec_mod, "_ANNOUNCED", set())
    p = _pending(monkeypatch)
    p.announce()  # not decided yet
    assert capsys.readouterr().out == ""
    p.decide(1e9, 1)
    p.announce()
    p.announce()  # once per process
    assert capsys.readouterr().out == (
        "precision: bf16-mixed (CPU has AVX512-BF16; the model's forward is 1e+03 MFLOP per "
        "sample, 1e+03 MFLOP per batch of 1)\n")
    Precision("bf16", "cpu").announce()  # asked for: nothing to explain
    monkeypatch.setenv(prec_mod.ENV, "fp32")
    by_env = Precision("auto", "cpu")
    assert (by_env.mode, by_env.reason) == ("fp32", f"{prec_mod.ENV}=fp32")
    by_env.announce()  # whoever set the variable knows
    assert capsys.readouterr().out == ""


# -- pure bf16: the float32 master step -------------------------------------------------------

def _bf16_param(values):
    return torch.nn.Parameter(torch.tensor(values, dtype=torch.float32).to(torch.bfloat16))


def test_the_master_step_updates_a_float32_copy_and_rounds_it_to_bf16():
    p = _bf16_param([1.0, 2.0])
    prec = Precision("bf16", "cpu")
    opt = torch.optim.SGD([p], lr=1e-3)
    for _ in range(3):
        p.grad = torch.tensor([1.0, -1.0], dtype=torch.bfloat16)
        prec.step(opt)
    # float32 by hand, step by step: to ~1 - 3e-3 and ~2 + 3e-3; each update alone (1e-3) is under half a
    # bf16 step of the weight, so stepping the bf16 weight itself would leave it unchanged
    master = torch.tensor([1.0, 2.0])
    for _ in range(3):
        master = master - 1e-3 * torch.tensor([1.0, -1.0])
    assert torch.equal(prec._masters[p], master)
    assert prec._masters[p].dtype == torch.float32
    assert p.dtype == torch.bfloat16
    assert torch.equal(p.data, master.to(torch.bfloat16))
    assert p.grad.dtype == torch.bfloat16  # the user's gradient is put back


def test_the_master_step_skips_float32_parameters_and_steps_the_rest():
    f32 = torch.nn.Parameter(torch.tensor([5.0]))
    p = _bf16_param([1.0])
    prec = Precision("bf16", "cpu")
    opt = torch.optim.SGD([f32, p], lr=1e-3)  # a float32 parameter first in the group
    f32.grad, p.grad = torch.tensor([1.0]), torch.tensor([1.0], dtype=torch.bfloat16)
    prec.step(opt)
    p.grad = torch.tensor([1.0], dtype=torch.bfloat16)
    prec.step(opt)
    assert f32 not in prec._masters
    assert torch.equal(f32.data, torch.tensor([5.0]) - 1e-3 - 1e-3)
    assert torch.equal(prec._masters[p], torch.tensor([1.0]) - 1e-3 - 1e-3)


def test_bf16_optimizer_state_from_a_checkpoint_becomes_float32():
    p = _bf16_param([1.0, 2.0])
    prec = Precision("bf16", "cpu")
    opt = torch.optim.SGD([p], lr=0.5, momentum=0.5)
    buf = torch.tensor([0.25, -0.5], dtype=torch.bfloat16)
    opt.state[p]["momentum_buffer"] = buf
    opt.state[p]["note"] = 3  # not a tensor: left as it is
    p.grad = torch.tensor([1.0, 1.0], dtype=torch.bfloat16)
    prec.step(opt)
    # SGD with momentum by hand: buf = 0.5 buf + g; w = w - lr buf
    new_buf = 0.5 * buf.float() + torch.tensor([1.0, 1.0])
    assert opt.state[p]["momentum_buffer"].dtype == torch.float32
    assert torch.equal(opt.state[p]["momentum_buffer"], new_buf)
    assert opt.state[p]["note"] == 3
    assert torch.equal(prec._masters[p], torch.tensor([1.0, 2.0]) - 0.5 * new_buf)


def test_a_checkpoints_masters_are_taken_up_as_float32_at_the_next_step():
    p = _bf16_param([1.0])
    prec = Precision("bf16", "cpu")
    prec._names = {p: "w"}
    exact = torch.tensor([1.0 + 2**-12], dtype=torch.float64)  # between two bf16 values
    prec.load_state_dict({"mode": "bf16", "skipped_steps": 0, "masters": {"w": exact}})
    opt = torch.optim.SGD([p], lr=0.0)
    p.grad = torch.zeros(1, dtype=torch.bfloat16)
    prec.step(opt)
    assert prec._masters[p].dtype == torch.float32
    assert torch.equal(prec._masters[p], exact.float())  # the saved master, not bf16(p)
    assert prec.state_dict()["masters"]["w"].dtype == torch.float32


def test_a_bf16_state_without_masters_loads_and_starts_them_from_the_weights():
    p = _bf16_param([1.5])
    prec = Precision("bf16", "cpu")
    prec._names = {p: "w"}
    prec.load_state_dict({"mode": "bf16", "skipped_steps": 2})
    assert prec.skipped_steps == 2
    opt = torch.optim.SGD([p], lr=0.0)
    p.grad = torch.zeros(1, dtype=torch.bfloat16)
    prec.step(opt)
    assert torch.equal(prec._masters[p], torch.tensor([1.5]))


def test_a_checkpoint_of_an_unknown_mode_names_both(monkeypatch):
    with pytest.raises(ValueError) as e:
        _pending(monkeypatch).load_state_dict({"mode": "fp99"})
    assert str(e.value) == "precision: checkpoint was written with 'fp99', this run uses 'auto'"
    with pytest.raises(ValueError) as e:
        Precision("fp32", "cpu").load_state_dict({"mode": "bf16"})
    assert str(e.value) == "precision: checkpoint was written with 'bf16', this run uses 'fp32'"
