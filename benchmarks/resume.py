"""Fault tolerance (issue 12): cost of backups, time to resume, exactness after kill -9.

1. Backup cost: ``fit`` on MNIST with the CLI's MLP and CNN (``brisk.cli.build_model``) and
   ``BackupAndRestore(save_freq="epoch")`` or every N batches; the time spent writing
   backups (measured inside ``BackupAndRestore._save``) as a share of the epoch's time.
2. Time to resume: ``BackupAndRestore.on_train_begin`` (load, checks, RNG) of a mid-epoch
   backup, and the whole resumed fit's extra time before its first batch.
3. Kills: ``--kills`` trials; each starts a training process (MLP, 8x8 digits), kills it
   with SIGKILL at a random moment, runs it again to the end, and compares every tensor of
   the final weights with an uninterrupted run (``torch.equal``).

Prints the CPU (lscpu) and one table per part. Example::

    python benchmarks/resume.py --data-dir ../shared/data --kills 50
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import torch

import brisk
from brisk.callbacks import BackupAndRestore, Callback
from brisk.cli import build_model


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        return "unknown CPU"


class _Timed(BackupAndRestore):
    """BackupAndRestore that adds up the time of its writes and of its restore."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.save_s, self.saves, self.restore_s = 0.0, 0, 0.0

    def _save(self):
        t = time.perf_counter()
        super()._save()
        self.save_s += time.perf_counter() - t
        self.saves += 1

    def on_train_begin(self, logs=None):
        t = time.perf_counter()
        super().on_train_begin(logs)
        self.restore_s = time.perf_counter() - t


class _EpochTimes(Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.t)

    def on_train_begin(self, logs=None):
        self.times = []


class _StopAt(Callback):
    def __init__(self, batches):
        self.n, self.k = 0, batches

    def on_train_batch_end(self, batch, logs=None):
        self.n += 1
        if self.n == self.k:
            raise KeyboardInterrupt  # an interruption that keeps the backup


def _model(kind):
    torch.manual_seed(0)
    m = build_model(kind, (28, 28), 10)
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
              device="cpu", seed=0)
    return m


def backup_cost(x, y, kind, save_freq, epochs, folder):
    m = _model(kind)
    times, b = _EpochTimes(), _Timed(os.path.join(folder, f"{kind}-{save_freq}"),
                                     save_freq=save_freq)
    m.fit(x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[times, b])
    epoch_s = float(np.median(times.times))
    per_epoch = b.save_s / epochs
    # an epoch-end backup runs after _EpochTimes has stopped its clock; batch ones inside it
    train_s = epoch_s - (per_epoch if save_freq != "epoch" else 0.0)
    return epoch_s, b.saves / epochs, per_epoch, 100 * per_epoch / train_s


def resume_time(x, y, kind, folder):
    bdir = os.path.join(folder, f"{kind}-resume")
    steps = len(x) // 32
    try:  # interrupted in the middle of epoch 2, after a backup every 50 batches
        _model(kind).fit(x, y, batch_size=32, epochs=2, verbose=0,
                         callbacks=[BackupAndRestore(bdir, save_freq=50),
                                    _StopAt(steps + steps // 2)])
    except KeyboardInterrupt:
        pass
    m = _model(kind)
    b = _Timed(bdir, save_freq=50)
    first = []

    class First(Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if not first:
                first.append(time.perf_counter())

    t0 = time.perf_counter()
    m.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[First(), b])
    return b.restore_s, first[0] - t0


_KILL_SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    import brisk
    from brisk.cli import build_model
    (x, y), _ = brisk.datasets.load_digits()
    torch.manual_seed(0)
    m = build_model("mlp", (8, 8), 10)
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", device="cpu")
    cbs = [brisk.callbacks.BackupAndRestore(sys.argv[1], save_freq=7)] if sys.argv[1] else []
    cbs.append(brisk.callbacks.LambdaCallback(on_train_begin=lambda logs: print("go", flush=True)))
    m.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=cbs)
    m.save(sys.argv[2])
""")


def kills(n, folder, seed=0):
    from safetensors.torch import load_file

    script = os.path.join(folder, "kill_train.py")
    with open(script, "w") as f:
        f.write(_KILL_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = os.path.join(folder, "ref.safetensors")
    p = subprocess.Popen([sys.executable, script, "", ref], env=env, stdout=subprocess.PIPE)
    p.stdout.readline()
    t0 = time.perf_counter()
    p.wait(timeout=300)
    length = time.perf_counter() - t0
    want = load_file(ref)
    rng = random.Random(seed)
    exact = killed = 0
    for i in range(n):
        bdir, out = os.path.join(folder, f"b{i}"), os.path.join(folder, f"o{i}.safetensors")
        p = subprocess.Popen([sys.executable, script, bdir, out], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            p.stdout.readline()
            time.sleep(rng.uniform(0.0, 1.0) * length)
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                killed += 1
            p.wait(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run([sys.executable, script, bdir, out], env=env, check=True, timeout=300,
                       stdout=subprocess.DEVNULL)
        got = load_file(out)
        same = got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
        exact += same
        leftovers = [f for f in os.listdir(folder) if f.endswith(".brisk-tmp")]
        if os.path.exists(bdir) or leftovers:
            print(f"  trial {i}: backup folder or temp files left behind")
    return killed, exact, length


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("BRISK_DATA_DIR", "../shared/data"))
    ap.add_argument("--epochs", type=int, default=3, help="epochs per backup-cost run (3)")
    ap.add_argument("--samples", type=int, default=60000, help="MNIST training images (60000)")
    ap.add_argument("--kills", type=int, default=50, help="kill -9 trials (50)")
    ap.add_argument("--models", default="mlp,cnn")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}; 1 thread")
    (x, y), _ = brisk.datasets.load_mnist(data_dir=args.data_dir)
    x, y = x[: args.samples], y[: args.samples]
    with tempfile.TemporaryDirectory() as folder:
        print(f"\nBackup cost, MNIST {len(x)} images, batch 32, {args.epochs} epochs:")
        print("| model | save_freq | s/epoch | backups/epoch | backup s/epoch | cost % of epoch |")
        print("|---|---|---:|---:|---:|---:|")
        for kind in args.models.split(","):
            xs = x[..., None] if kind == "cnn" else x
            for freq in ("epoch", 500, 100):
                e, n, s, pct = backup_cost(xs, y, kind, freq, args.epochs, folder)
                print(f"| {kind} | {freq} | {e:.2f} | {n:.0f} | {s:.4f} | {pct:.2f} |")
        print("\nTime to resume from a mid-epoch backup:")
        print("| model | restore (load + checks) s | fit start to first batch s |")
        print("|---|---:|---:|")
        for kind in args.models.split(","):
            xs = x[..., None] if kind == "cnn" else x
            r, first = resume_time(xs[:6400], y[:6400], kind, folder)
            print(f"| {kind} | {r:.3f} | {first:.3f} |")
        if args.kills:
            killed, exact, length = kills(args.kills, folder)
            print(f"\nkill -9: {args.kills} trials (digits MLP, 4 epochs, {length:.1f} s of "
                  f"training), {killed} killed mid-run, {exact}/{args.kills} resumed runs "
                  "bit-identical to the uninterrupted run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
