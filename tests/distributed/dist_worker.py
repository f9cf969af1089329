"""Run by torchrun from tests/distributed/test_ddp.py (2 processes, gloo, CPU): each scenario
trains with brisk under torchrun and writes what it saw to OUT/<scenario>-<rank>.pt, which
the test compares with one process computing the same thing.

    torchrun --standalone --nproc-per-node 2 tests/distributed/dist_worker.py OUT SCENARIO...
"""

from __future__ import annotations

import os
import sys

import torch
from torch import nn

import brisk
from brisk.callbacks import Callback, CSVLogger, ModelCheckpoint

# the data and models the test rebuilds in one process (tests/distributed/test_ddp.py)
N, FEATURES, CLASSES = 64, 6, 3


def data(n: int = N, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FEATURES, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


def mlp(seed: int, batchnorm: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(FEATURES, 16)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(16))
    layers += [nn.ReLU(), nn.Linear(16, CLASSES)]
    return nn.Sequential(*layers)


def sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def trainer(model: nn.Module, seed: int, **kw) -> brisk.Trainer:
    return brisk.Trainer(model, optimizer=sgd, loss="cross_entropy", metrics=["accuracy"],
                         seed=seed, device="cpu", **kw)


class Seen(Callback):
    """The first feature of every training sample, per epoch (which samples a rank saw)."""

    def __init__(self, model: nn.Module):
        self.epochs: list[list[float]] = []
        model.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        if module.training:
            self.epochs[-1].extend(args[0][:, 0].tolist())

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append([])


class CountAllReduces(Callback):
    """Counts DDP's gradient all-reduces (a comm hook that counts, then all-reduces)."""

    def __init__(self):
        self.calls = 0

    def on_train_begin(self, logs=None):
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        def hook(state, bucket):
            self.calls += 1
            return allreduce_hook(None, bucket)

        self.trainer._ddp.register_comm_hook(None, hook)


class StopAt(Callback):
    """Sets stop_training on one rank only: at a batch, or at an epoch's end."""

    def __init__(self, rank: int, batch: int | None = None, epoch: int | None = None):
        self.rank, self.batch, self.epoch = rank, batch, epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.batch is not None and self.trainer.epoch == 0 and batch == self.batch \
                and int(os.environ["RANK"]) == self.rank:
            self.trainer.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.epoch is not None and epoch == self.epoch and int(os.environ["RANK"]) == self.rank:
            self.trainer.stop_training = True


def run(scenario: str, rank: int, out: str) -> dict:
    x, y = data()
    # each rank seeds differently: the initial weights and the shuffle seed must be rank 0's
    if scenario == "equivalence":
        model = mlp(seed=rank)
        seen = Seen(model)
        t = trainer(model, seed=5 + rank)
        hist = t.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[seen])
        return {"state": model.state_dict(), "history": hist.history, "seen": seen.epochs}
    if scenario == "accumulate":
        model = mlp(seed=rank)
        t = trainer(model, seed=5 + rank, accumulate=2)
        count = CountAllReduces()
        hist = t.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[count])
        return {"state": model.state_dict(), "history": hist.history,
                "allreduces": count.calls, "steps": t.global_step}
    if scenario == "evaluate":  # 37 rows: uneven, each counted once
        model = mlp(seed=0)
        t = trainer(model, seed=5)
        xe, ye = data(37, seed=1)
        return {"evaluate": t.evaluate(xe, ye, batch_size=5, return_dict=True),
                "predict": torch.as_tensor(t.predict(xe, batch_size=4)),
                "predict_one": torch.as_tensor(t.predict(xe[:1]))}
    if scenario == "uneven":  # 37 training rows, validation, BatchNorm: finishes, agrees
        model = mlp(seed=rank, batchnorm=True)
        t = trainer(model, seed=5)
        xv, yv = data(11, seed=2)
        csv = os.path.join(out, "history.csv")
        ckpt = os.path.join(out, "best.safetensors")
        hist = t.fit(*data(37, seed=3), batch_size=8, epochs=3, verbose=0,
                     validation_data=(xv, yv),
                     callbacks=[CSVLogger(csv), ModelCheckpoint(ckpt, monitor="val_loss")])
        return {"state": model.state_dict(), "history": hist.history,
                "csv": open(csv).read(), "files": sorted(os.listdir(out))}
    if scenario == "stops":
        t1 = trainer(mlp(seed=0), seed=5)
        h1 = t1.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[StopAt(1, epoch=1)])
        t2 = trainer(mlp(seed=0), seed=5)
        t2.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[StopAt(0, batch=1)])
        return {"epochs": len(h1.epoch), "steps": t2.global_step}
    if scenario == "dataset":
        model = mlp(seed=rank)
        seen = Seen(model)
        t = trainer(model, seed=5)
        t.fit(torch.utils.data.TensorDataset(x, y), batch_size=8, epochs=2, verbose=0,
              callbacks=[seen])
        err = None
        try:
            t.fit(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                              batch_size=8), epochs=1, verbose=0)
        except ValueError as e:
            err = str(e)
        return {"seen": seen.epochs, "error": err, "state": model.state_dict()}
    if scenario == "raises":  # rank 1 raises in its second epoch; rank 0 trains on
        def fail(epoch, logs):
            if epoch == 1 and rank == 1:
                raise RuntimeError("rank 1 fails on purpose")

        trainer(mlp(seed=0), seed=5).fit(x, y, batch_size=8, epochs=10_000, verbose=0,
                                         callbacks=[brisk.callbacks.LambdaCallback(
                                             on_epoch_end=fail)])
        return {}
    if scenario == "fsdp":  # FSDP2: training, uneven validation, evaluate, predict, files
        model = mlp(seed=rank)
        t = trainer(model, seed=5 + rank, strategy="fsdp")
        xe, ye = data(37, seed=1)
        hist = t.fit(x, y, batch_size=8, epochs=3, verbose=0, validation_data=(xe, ye))
        result = {"history": hist.history, "state": brisk.distributed.full_state_dict(model),
                  "sharded": brisk.distributed.is_sharded(model),
                  # batch 3: 7 batches on rank 0 (19 rows), 6 on rank 1, which pads
                  "evaluate": t.evaluate(xe, ye, batch_size=3, return_dict=True),
                  "predict": torch.as_tensor(t.predict(xe, batch_size=3)),
                  # one row: rank 1 has none and runs one padding forward
                  "evaluate_one": t.evaluate(xe[:1], ye[:1], return_dict=True),
                  "predict_one": torch.as_tensor(t.predict(xe[:1]))}
        t.save(os.path.join(out, "full.safetensors"))  # every rank calls, rank 0 writes
        t.save_checkpoint(os.path.join(out, "ckpt"))
        t.fit(x, y, batch_size=8, epochs=4, initial_epoch=3, verbose=0)
        result["continued"] = brisk.distributed.full_state_dict(model)
        # a fresh trainer resumes from the sharded folder (loaded before its model is sharded)
        model2 = mlp(seed=7)
        t2 = trainer(model2, seed=9, strategy="fsdp")
        t2.load_checkpoint(os.path.join(out, "ckpt"))
        result["epoch_after_load"] = t2.epoch
        t2.fit(x, y, batch_size=8, epochs=4, initial_epoch=3, verbose=0)
        result["resumed"] = brisk.distributed.full_state_dict(model2)
        # another precision: refused, before any weight is overwritten
        model3 = mlp(seed=7)
        t3 = trainer(model3, seed=9, strategy="fsdp", precision="bf16-mixed")
        try:
            t3.load_checkpoint(os.path.join(out, "ckpt"))
        except ValueError as e:
            result["precision_error"] = str(e)
        result["refused_state"] = model3.state_dict()
        result["files"] = sorted(os.listdir(out))
        result["ckpt_files"] = sorted(os.listdir(os.path.join(out, "ckpt")))
        return result
    if scenario == "fsdp_accumulate":
        model = mlp(seed=rank)
        t = trainer(model, seed=5 + rank, strategy="fsdp", accumulate=2)
        hist = t.fit(x, y, batch_size=4, epochs=2, verbose=0)
        auto = trainer(mlp(seed=0), seed=5, strategy="auto")
        auto.fit(x, y, batch_size=8, epochs=1, verbose=0)
        return {"state": brisk.distributed.full_state_dict(model), "history": hist.history,
                "steps": t.global_step, "auto": auto.strategy_reason,
                "auto_sharded": brisk.distributed.is_sharded(auto.module)}
    if scenario == "fsdp_keras":  # the Keras front, bf16-mixed policy, full export
        from brisk.layers import Dense

        torch.manual_seed(rank)
        model = brisk.Sequential([Dense(16, activation="relu", input_shape=(FEATURES,)),
                                  Dense(CLASSES, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], strategy="fsdp", precision="bf16-mixed",
                      device="cpu", seed=5)
        hist = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        path = os.path.join(out, "model.safetensors")
        model.save(path)
        return {"history": hist.history, "predict": torch.as_tensor(model.predict(x)),
                "files": sorted(os.listdir(out)), "path": path}
    raise ValueError(f"unknown scenario {scenario!r}")


def main() -> None:
    out, scenarios = sys.argv[1], sys.argv[2:]
    rank = int(os.environ["RANK"])
    for scenario in scenarios:
        d = os.path.join(out, scenario)
        os.makedirs(d, exist_ok=True)
        result = run(scenario, rank, d)
        torch.save(result, os.path.join(out, f"{scenario}-{rank}.pt"))


if __name__ == "__main__":
    main()
