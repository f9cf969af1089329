"""fit/evaluate/predict under torchrun (2 processes, gloo, CPU) against one process computing
the same thing: DDP == single process (DESIGN principle 10).

The workers run tests/distributed/dist_worker.py; each launch is bounded by a timeout and
its whole process group is killed on the way out, so a hang fails the test instead of CI.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import brisk

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dist_worker as w  # noqa: E402

SCENARIOS = ["equivalence", "accumulate", "evaluate", "uneven", "stops", "dataset", "fsdp",
             "fsdp_accumulate", "fsdp_keras"]
LAUNCH_TIMEOUT = 240  # s: 2 processes importing torch and training nine small runs


def torchrun(*args: str, timeout: float = LAUNCH_TIMEOUT):
    """``torchrun --standalone --nproc-per-node 2 ARGS``; returns (returncode, output,
    seconds). The whole process group is killed on the way out."""
    return launch([sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc-per-node", "2", "--monitor-interval", "0.5", *args], timeout)


def kill_tree(pid: int) -> None:
    """SIGKILL a launcher and everything under it: torchrun starts each worker as a session
    leader, so killing the launcher's process group would leave the workers running."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(p)], capture_output=True,
                             text=True).stdout
        todo.extend(int(c) for c in out.split())
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def launch(cmd: list[str], timeout: float):
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        output = ""
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
            output += proc.communicate()[0] or ""
            pytest.fail(f"torchrun did not finish within {timeout} s:\n{output[-3000:]}")
    return proc.returncode, output, time.monotonic() - start


def run_worker(out: str, *scenarios: str, timeout: float = LAUNCH_TIMEOUT):
    return torchrun(os.path.join(HERE, "dist_worker.py"), out, *scenarios, timeout=timeout)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ddp"))
    rc, output, _ = run_worker(out, *SCENARIOS)
    assert rc == 0, output[-5000:]
    got = {(s, r): torch.load(os.path.join(out, f"{s}-{r}.pt"), weights_only=False)
           for s in SCENARIOS for r in (0, 1)}
    got["fsdp_dir"] = os.path.join(out, "fsdp")
    return got


def single(model, **fit):
    """The same run in this process (no torchrun: one process, the union batch)."""
    seen = w.Seen(model)
    t = w.trainer(model, seed=5)
    hist = t.fit(*w.data(), verbose=0, callbacks=[seen], **fit)
    return model.state_dict(), hist.history, seen.epochs


def assert_same_state(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)


def assert_same_history(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=1e-6), k


def test_ddp_equals_one_process_on_the_union_batch(results):
    """2 ranks x batch 8 == 1 process x batch 16 on the same order: the weights (from
    rank 0's initial weights and shuffle seed, although each rank seeded differently), the
    logged loss and accuracy (all-reduced), and each rank's samples (positions r, r+2, ...
    of the one-process order)."""
    state, history, seen = single(w.mlp(seed=0), batch_size=16, epochs=3)
    for r in (0, 1):
        got = results["equivalence", r]
        assert_same_state(got["state"], state, atol=1e-6)
        assert_same_history(got["history"], history)
        assert [e[r::2] for e in seen] == got["seen"]
    # every sample once per epoch across ranks, in a new order each epoch
    both = [results["equivalence", 0]["seen"][e] + results["equivalence", 1]["seen"][e]
            for e in range(3)]
    x, _ = w.data()
    for e in both:
        assert sorted(e) == sorted(x[:, 0].tolist())
    assert both[0] != both[1] and both[1] != both[2]


def test_ddp_with_accumulation_equals_the_union_batch(results):
    """accumulate=2 (the first micro-batch under no_sync) on 2 ranks x batch 4 == one step
    on the 16 samples of both ranks' 2 micro-batches."""
    state, history, _ = single(w.mlp(seed=0), batch_size=16, epochs=2)
    for r in (0, 1):
        got = results["accumulate", r]
        assert_same_state(got["state"], state, atol=1e-6)
        assert_same_history(got["history"], history)
        # one all-reduce (one bucket: a small model) per optimizer step, not per micro-batch
        assert got["steps"] == 8 and got["allreduces"] == 8


def test_evaluate_and_predict_count_each_row_once(results):
    """37 rows over 2 ranks (19 + 18, no padding): evaluate equals one process's; predict
    returns all rows in order on every rank, also for 1 row (rank 1 has none)."""
    t = w.trainer(w.mlp(seed=0), seed=5)
    xe, ye = w.data(37, seed=1)
    want = t.evaluate(xe, ye, batch_size=5, return_dict=True)
    pred = torch.as_tensor(t.predict(xe, batch_size=4))
    for r in (0, 1):
        got = results["evaluate", r]
        assert got["evaluate"].keys() == want.keys()
        for k in want:
            assert got["evaluate"][k] == pytest.approx(want[k], abs=1e-6), k
        torch.testing.assert_close(got["predict"], pred, atol=1e-6, rtol=0)
        torch.testing.assert_close(got["predict_one"], pred[:1], atol=1e-6, rtol=0)


def test_fsdp_equals_one_process_on_the_union_batch(results):
    """strategy='fsdp' (FSDP2: each Linear a block, then the root) on 2 ranks x batch 8 ==
    one process x batch 16, from rank 0's initial weights: the full weights gathered on
    rank 0, the logged values, validation on 37 rows (19 + 18: the rank with fewer batches
    pads its forwards, or the all-gathers would wait forever), evaluate and predict."""
    xe, ye = w.data(37, seed=1)
    model = w.mlp(seed=0)
    t = w.trainer(model, seed=5)
    hist = t.fit(*w.data(), batch_size=16, epochs=3, verbose=0, validation_data=(xe, ye))
    want_eval = t.evaluate(xe, ye, batch_size=3, return_dict=True)
    want_pred = torch.as_tensor(t.predict(xe, batch_size=3))
    want_one = t.evaluate(xe[:1], ye[:1], return_dict=True)
    assert results["fsdp", 1]["state"] == {}  # gathered on rank 0 only
    assert_same_state(results["fsdp", 0]["state"], model.state_dict(), atol=1e-6)
    for r in (0, 1):
        got = results["fsdp", r]
        assert got["sharded"]  # the weights stay sharded after fit
        assert_same_history(got["history"], hist.history)
        assert got["evaluate"] == pytest.approx(want_eval, abs=1e-6)
        torch.testing.assert_close(got["predict"], want_pred, atol=1e-6, rtol=0)
        assert got["evaluate_one"] == pytest.approx(want_one, abs=1e-6)
        torch.testing.assert_close(got["predict_one"], want_pred[:1], atol=1e-6, rtol=0)


def test_fsdp_accumulation_equals_the_union_batch_and_auto_says_why(results):
    """accumulate=2 under FSDP (gradient sync off on the first micro-batch) == one step on
    the 16 samples; strategy='auto' keeps DDP for a model this small, and says why."""
    model = w.mlp(seed=0)
    hist = w.trainer(model, seed=5).fit(*w.data(), batch_size=16, epochs=2, verbose=0)
    assert_same_state(results["fsdp_accumulate", 0]["state"], model.state_dict(), atol=1e-6)
    for r in (0, 1):
        got = results["fsdp_accumulate", r]
        assert got["steps"] == 8
        assert_same_history(got["history"], hist.history)
        assert got["auto"].startswith("strategy='auto' chose 'ddp': a full copy of the "
                                      "training state")
        assert not got["auto_sharded"]


def test_fsdp_sharded_checkpoint_resumes_exactly_and_rank_0_exports_full_weights(results):
    """save_checkpoint under FSDP writes one folder (torch.distributed.checkpoint: a shard
    file per rank, .metadata, trainer.pt); a fresh trainer that loads it before fit
    continues bit-identically to the run that went on; save() writes the full weights
    once, as safetensors, equal to the gathered state."""
    from brisk.engine.checkpoint import load_safetensors

    got = results["fsdp", 0]
    assert got["ckpt_files"] == [".metadata", "__0_0.distcp", "__1_0.distcp", "trainer.pt"]
    assert got["files"] == ["ckpt", "full.safetensors"]  # no temp folder left behind
    assert_same_state(got["resumed"], got["continued"], atol=0)
    assert got["epoch_after_load"] == 2  # the saved epoch, readable before fit
    assert any(not torch.equal(got["continued"][k], got["state"][k]) for k in got["state"])
    assert got["precision_error"] == (f"checkpoint {os.path.join(results['fsdp_dir'], 'ckpt')!r}: "
                                      "written with precision 'fp32', this run uses 'bf16-mixed'")
    assert_same_state(got["refused_state"], w.mlp(seed=7).state_dict(), atol=0)
    full, _ = load_safetensors(os.path.join(results["fsdp_dir"], "full.safetensors"), "test")
    assert_same_state(full, got["state"], atol=0)


def test_fsdp_on_the_keras_front_with_bf16_mixed_exports_a_model_that_loads(results):
    """brisk.Sequential compiled with strategy='fsdp', precision='bf16-mixed' (FSDP's
    MixedPrecisionPolicy): the last layer's forward_logits all-gathers its block too; the
    file model.save wrote once (rank 0) loads as a plain Sequential of Dense layers whose
    float32 predictions are the sharded model's bf16 ones within bf16's rounding."""
    a, b = results["fsdp_keras", 0], results["fsdp_keras", 1]
    assert a["history"] == b["history"] and a["files"] == ["model.safetensors"]
    assert a["history"]["loss"][1] < a["history"]["loss"][0]
    model = brisk.load_model(a["path"])
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Dense"]
    got = torch.as_tensor(model.predict(w.data()[0]))
    torch.testing.assert_close(got, a["predict"], atol=2e-2, rtol=0)
    torch.testing.assert_close(a["predict"], b["predict"], atol=0, rtol=0)


def test_uneven_data_finishes_with_the_same_model_and_one_writer(results):
    """37 training rows (shards padded to 19 each), validation on 11 rows, BatchNorm: both
    ranks end with the same weights and running statistics, log the same values, and the
    CSV log holds one header and one row per epoch (rank 0 wrote it)."""
    a, b = results["uneven", 0], results["uneven", 1]
    assert_same_state(a["state"], b["state"], atol=0)
    assert a["history"] == b["history"] and len(a["history"]["val_loss"]) == 3
    lines = a["csv"].splitlines()
    assert lines[0].startswith("epoch,") and [ln.split(",")[0] for ln in lines[1:]] == ["0", "1", "2"]
    assert a["csv"] == b["csv"]
    assert "best.safetensors" in a["files"] and "history.csv" in b["files"]
    assert not any(f.startswith(".") or f.endswith(".tmp") for f in a["files"])


def test_a_stop_on_one_rank_stops_every_rank_at_the_same_point(results):
    for r in (0, 1):
        assert results["stops", r]["epochs"] == 2  # rank 1 asked at the end of epoch 2
        assert results["stops", r]["steps"] == 2  # rank 0 asked after batch 2 of epoch 1


def test_a_dataset_gets_a_distributed_sampler_and_a_plain_dataloader_is_refused(results):
    x, _ = w.data()
    seen = [results["dataset", 0]["seen"][e] + results["dataset", 1]["seen"][e] for e in (0, 1)]
    for e in seen:
        assert sorted(e) == sorted(x[:, 0].tolist())
    assert seen[0] != seen[1]  # set_epoch: a new order per epoch
    assert_same_state(results["dataset", 0]["state"], results["dataset", 1]["state"], atol=0)
    for r in (0, 1):
        err = results["dataset", r]["error"]
        assert err is not None and err.startswith("x: under torchrun (WORLD_SIZE=2) a DataLoader")
        assert "DistributedSampler" in err


def test_a_rank_that_raises_ends_the_job_with_its_error(tmp_path):
    rc, output, seconds = run_worker(str(tmp_path), "raises", timeout=120)
    assert rc != 0
    assert "rank 1 fails on purpose" in output
    assert seconds < 120


def test_brisk_train_runs_under_torchrun_and_rank_0_writes(tmp_path):
    """``brisk train --nproc-per-node 2 --out`` starts ``torchrun ... -m brisk train --out``:
    one report, the run's files once, the backup folder gone after a normal end."""
    out = tmp_path / "run"
    rc, output, _ = launch([sys.executable, "-m", "brisk", "train", "--nproc-per-node", "2",
                            "--epochs", "2", "--out", str(out)], LAUNCH_TIMEOUT)
    assert rc == 0, output[-3000:]
    assert output.count("test accuracy:") == 1 and output.count("wrote ") == 1
    assert sorted(p.name for p in out.iterdir()) == ["history.csv", "history.png",
                                                     "model.safetensors", "result.json"]
    rows = (out / "history.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["epoch", "1", "2"]


def test_nproc_per_node_starts_torchrun_with_the_rest_of_the_command(monkeypatch):
    from brisk import cli

    ran = []
    monkeypatch.setattr("subprocess.run", lambda cmd, env: ran.append(cmd) or
                        subprocess.CompletedProcess(cmd, 3))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert cli.main(["train", "--epochs", "1", "--nproc-per-node", "4", "--out", "o"]) == 3
    assert ran == [[sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc-per-node", "4", "-m", "brisk", "train", "--epochs", "1",
                    "--out", "o"]]
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli.main(["train", "--nproc-per-node=2"]) == 2  # under torchrun already: refused


def test_nproc_per_node_checks_the_device_before_starting_torchrun(monkeypatch, capsys):
    from brisk import cli

    ran = []
    monkeypatch.setattr("subprocess.run", lambda cmd, env: ran.append(cmd))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.main(["train", "--nproc-per-node", "2", "--device", "cuda"]) == 2
    assert ran == []  # one error line, no workers each printing it under a launcher traceback
    assert capsys.readouterr().err == ("brisk train: error: device: 'cuda' was asked for but no "
                                       "CUDA GPU is available\n")


def test_exit_waits_for_every_rank_through_the_store_then_destroys_the_group(monkeypatch):
    """Tearing gloo down while a peer still finishes its last collective made that peer
    abort (3 of 10 plain all_gather runs): the exit waits for every rank first."""
    from brisk import distributed as d

    events = []

    class Store:
        n = 0

        def add(self, key, v):
            assert key == "brisk/exit"
            self.n += v
            if v == 0 and self.n == 1 and len(events) == 3:
                self.n = 2  # the peer arrives while this rank waits
            events.append(("add", v, self.n))
            return self.n

    monkeypatch.setattr(d.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(d.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(d.dist.distributed_c10d, "_get_default_store", lambda: Store())
    monkeypatch.setattr(d.dist, "destroy_process_group", lambda: events.append("destroy"))
    monkeypatch.setattr(d.time, "sleep", lambda s: None)
    monkeypatch.delattr(sys, "last_value", raising=False)
    d._destroy()
    assert events == [("add", 1, 1), ("add", 0, 1), ("add", 0, 1), ("add", 0, 2), "destroy"]
    # a rank ending on an error does not wait (torchrun stops its peers)
    events.clear()
    monkeypatch.setattr(sys, "last_value", RuntimeError("x"), raising=False)
    d._destroy()
    assert events == ["destroy"]
    # a peer that never comes holds the exit 10 s at most (monotonic clock)
    events.clear()
    monkeypatch.delattr(sys, "last_value")
    now = iter(range(0, 100, 4))
    monkeypatch.setattr(d.time, "monotonic", lambda: next(now))

    class Lonely(Store):
        def add(self, key, v):
            self.n += v
            events.append(("add", v, self.n))
            return self.n

    monkeypatch.setattr(d.dist.distributed_c10d, "_get_default_store", lambda: Lonely())
    d._destroy()
    assert events[-1] == "destroy" and len(events) == 4  # t = 0 (deadline 10), 4, 8, 12


def _workers(parent: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def test_elastic_restart_after_sigkill_resumes_from_the_backup_exactly(tmp_path):
    """``torchrun --max-restarts 1 -m brisk train --out``: a worker killed with SIGKILL after
    the first backup makes torchrun restart the group, which resumes from the backup and
    ends with the weights of an uninterrupted run, bit for bit (digits MLP: no dropout)."""
    from safetensors.torch import load_file

    args = ["-m", "brisk", "train", "--epochs", "20", "--verbose", "0"]
    rc, output, _ = torchrun(*args, "--out", str(tmp_path / "ref"))
    assert rc == 0, output[-3000:]

    out = tmp_path / "killed"
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    # torch issue 135712: restarted workers that share torchrun's TCP store may read the
    # killed group's addresses (gloo: "connection refused"); the README says to set this
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "--max-restarts", "1", "--monitor-interval", "0.5", *args, "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "backup" / "latest.pt").exists():  # the end of the first epoch
            assert proc.poll() is None and time.monotonic() < deadline, "no backup appeared"
            time.sleep(0.02)
        victims = _workers(proc.pid)
        assert len(victims) == 2
        os.kill(victims[1], signal.SIGKILL)
        output, _ = proc.communicate(timeout=LAUNCH_TIMEOUT)
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
            proc.communicate()
    assert proc.returncode == 0, output[-3000:]
    assert "resuming from the backup" in output
    ref, got = load_file(tmp_path / "ref" / "model.safetensors"), load_file(out / "model.safetensors")
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    rows = (out / "history.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(e) for e in range(1, 21)]


def test_two_torchrun_launches_with_nnodes_2_behave_as_two_machines(tmp_path):
    """``--nnodes 2`` with a c10d rendezvous on 127.0.0.1: two torchrun agents, one process
    each (node ranks 0 and 1), train as the 2-process launch does (equivalence scenario)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    procs = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
         "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-id", "brisk-test",
         "--rdzv-endpoint", f"127.0.0.1:{port}", "--monitor-interval", "0.5",
         os.path.join(HERE, "dist_worker.py"), str(tmp_path), "equivalence"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
        start_new_session=True) for node in (0, 1)]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=LAUNCH_TIMEOUT)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                kill_tree(p.pid)
                p.communicate()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    state, history, seen = single(w.mlp(seed=0), batch_size=16, epochs=3)
    for r in (0, 1):
        got = torch.load(tmp_path / f"equivalence-{r}.pt", weights_only=False)
        assert_same_state(got["state"], state, atol=1e-6)
        assert_same_history(got["history"], history)
        assert [e[r::2] for e in seen] == got["seen"]
