"""Speed on a busy machine: one training epoch with torch's thread count left alone
(``Trainer(threads=None)``) against brisk's ``threads='auto'``, idle and beside one busy
process at the same priority (issue 15).

The fashion-mnist-cnn recipe's network and optimizer, one epoch on 20,000 Fashion-MNIST
images, batch 128, the machine's threads. A busy process is ``python -c 'while True:
pass'`` (one core at 100%, same nice level). Contenders alternate; each figure is the
median of ``--reps`` epochs after a warm-up epoch.

Usage::

    python benchmarks/busy.py --data-dir ../shared/data       # ~3 min on 2 cores
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from distributed import cpu_name  # noqa: E402  (benchmarks/distributed.py)

import brisk  # noqa: E402
from brisk.layers import Dense, Flatten, Rescaling  # noqa: E402
from brisk.recipes.mnist import conv_pool_bn  # noqa: E402


def model(threads):
    brisk.utils.set_random_seed(0)
    m = brisk.Sequential([Rescaling(1 / 255, input_shape=(28, 28, 1)), *conv_pool_bn(32),
                          *conv_pool_bn(64), *conv_pool_bn(128), Flatten(),
                          Dense(10, activation="softmax")])
    m.compile(optimizer=brisk.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True,
                                             weight_decay=5e-4),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"],
              schedule="one_cycle", threads=threads, seed=0)
    m.to(memory_format=torch.channels_last)
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("BRISK_DATA_DIR",
                                                         str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args(argv)
    (x, y), _ = brisk.datasets.load_fashion_mnist(data_dir=args.data_dir)
    x, y = x[: args.samples, ..., None], y[: args.samples]
    print(f"torch {torch.__version__}, {cpu_name()}, {torch.get_num_threads()} threads, "
          f"usable cores {brisk.engine.threads.usable_cores()}; {len(x)} images, batch 128")
    results = {}
    for load in ("idle", "busy"):
        hog = None
        if load == "busy":
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1.0)
        try:
            models = {name: model(t) for name, t in (("threads=None", None),
                                                     ("threads='auto'", "auto"))}
            for m in models.values():  # warm-up epoch
                m.fit(x, y, batch_size=128, epochs=1, verbose=0)
            times = {name: [] for name in models}
            changes = {}
            for _ in range(args.reps):
                for name, m in models.items():
                    t0 = time.perf_counter()
                    m.fit(x, y, batch_size=128, epochs=1, verbose=0)
                    times[name].append(time.perf_counter() - t0)
                    changes[name] = "; ".join(m.trainer.thread_changes)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
        for name, ts in times.items():
            results[(load, name)] = statistics.median(ts)
            print(f"{load:5s} {name:15s} {statistics.median(ts):6.2f} s per epoch "
                  f"({', '.join(f'{t:.2f}' for t in ts)}); {changes[name] or 'no change'}",
                  flush=True)
    for load in ("idle", "busy"):
        a, b = results[(load, "threads=None")], results[(load, "threads='auto'")]
        print(f"{load}: threads='auto' {a / b:.2f}x faster than torch's default")
    for name in ("threads=None", "threads='auto'"):
        print(f"busy/idle with {name}: {results[('busy', name)] / results[('idle', name)]:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
