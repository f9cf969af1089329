"""Accuracy reference: the Keras-style MNIST MLP trained by Keras 3 itself (torch backend).

For each seed: ``keras.utils.set_random_seed(seed)``, the MLP 784-64-64-10 (relu, relu,
softmax) compiled with ``optimizer='adam', loss='sparse_categorical_crossentropy',
metrics=['accuracy']`` and ``fit(x / 255, y, epochs=3, batch_size=32,
validation_data=(x_test / 255, y_test))`` on real MNIST; prints val_accuracy per epoch.
It answers "what does Keras reach with this exact code", the bar brisk's MLP test is held to.
Not a timing script: run it under ``nice -n 19``.

    nice -n 19 python benchmarks/keras_mlp_accuracy.py [--seeds 0,1,2,3] [--epochs 3]
                                                      [--threads 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import DEFAULT_DATA_DIR  # noqa: E402
from peers import PIP_PEERS, import_keras  # noqa: E402

import brisk  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch default)")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        keras = import_keras()
    except ImportError:
        print(f"keras is not installed: {PIP_PEERS}")
        return 1

    (x, y), (xt, yt) = brisk.datasets.load_mnist(data_dir=args.data_dir, download=False)
    x = x.reshape(len(x), 784).astype("float32")
    xt = xt.reshape(len(xt), 784).astype("float32")
    print(f"keras {keras.__version__} (backend {keras.backend.backend()}), torch "
          f"{torch.__version__}, {args.epochs} epochs, batch 32, seeds {args.seeds}")
    results: dict[int, list[float]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([
            keras.Input(shape=(784,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        hist = model.fit(x / 255, y, epochs=args.epochs, batch_size=32,
                         validation_data=(xt / 255, yt), verbose=0)
        results[seed] = [float(a) for a in hist.history["val_accuracy"]]
        print(f"seed {seed}: val_accuracy per epoch "
              + " ".join(f"{a:.4f}" for a in results[seed]), flush=True)
    last = [v[-1] for v in results.values()]
    print(f"final epoch: mean {statistics.mean(last):.4f}, min {min(last):.4f}, "
          f"max {max(last):.4f} over {len(last)} seeds")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"keras": keras.__version__, "torch": torch.__version__, "numpy": np.__version__,
             "epochs": args.epochs, "val_accuracy": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
