"""Epoch throughput: brisk DeviceLoader vs torch DataLoader, on real MNIST (60000 images).

Compared, each with and without augmentation (random crop, padding 2, then horizontal flip):

* ``DeviceLoader``: uint8 data stored once; batches by gather, converted/augmented per batch.
* ``DataLoader(TensorDataset(x_float, y))``: the usual in-memory baseline (pre-normalised
  float32), batched augmentation applied to each collated batch.
* ``DataLoader(PerSampleDataset)``: the torchvision-style dataset that converts, normalises and
  augments one sample at a time in ``__getitem__`` (num_workers=0).

Every batch is touched (``acc += xb.sum()`` on the device, read once at the end) so no work is
skipped. One warm-up epoch, then ``--repeats`` timed epochs; median samples/s is reported with
the min..max spread. Runs single-threaded by default (``--threads``): see its help.

    python benchmarks/loader.py [--data-dir DIR] [--repeats 3] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

REPO = Path(__file__).resolve().parents[1]
try:
    import brisk.data  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(REPO / "src"))

from brisk.data import STATS, DeviceLoader, load_mnist  # noqa: E402
from brisk.data.augment import FlipLR, RandomCrop, compose  # noqa: E402

MEAN, STD = STATS["mnist"][0][0], STATS["mnist"][1][0]
PAD = 2


class PerSampleDataset(Dataset):
    """What a typical torchvision-style pipeline does: one sample at a time in Python."""

    def __init__(self, x_u8: torch.Tensor, y: torch.Tensor, augment: bool) -> None:
        self.x, self.y, self.augment = x_u8, y, augment

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        img = (self.x[i].float() / 255 - MEAN) / STD  # (1, 28, 28)
        if self.augment:  # same augmentation as the batched one, per sample with torch ops
            h, w = img.shape[-2:]
            padded = torch.nn.functional.pad(img, (PAD, PAD, PAD, PAD))
            oy, ox = torch.randint(0, 2 * PAD + 1, (2,)).tolist()
            img = padded[:, oy : oy + h, ox : ox + w]
            if torch.rand(()) < 0.5:
                img = img.flip(-1)
        return img, self.y[i]


def run_epoch(loader, device, transform=None, gen=None) -> int:
    acc = torch.zeros((), device=device)
    n = 0
    for xb, _yb in loader:
        if xb.device != device:
            xb = xb.to(device, non_blocking=True)
        if transform is not None:
            xb = transform(xb, gen)
        acc += xb.sum()
        n += len(xb)
    acc.item()  # one host read per epoch forces all queued work
    return n


def measure(make_epoch, repeats: int) -> list[float]:
    make_epoch()  # warm-up
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = make_epoch()
        rates.append(n / (time.perf_counter() - t0))
    return rates


def main(argv: list[str] | None = None) -> int:
    default_dir = os.environ.get("BRISK_DATA_DIR") or str(REPO.parent / "shared" / "data")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=default_dir)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-sizes", default="32,256")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (0: torch's default). Default 1: none of the loaders "
        "needs intra-op threads, and on a shared machine multi-threaded ops stall 10-100x "
        "whenever another process holds a core, which made runs unreadable",
    )
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    (x, y), _ = load_mnist(args.data_dir, download=False)
    x_u8 = torch.from_numpy(x).unsqueeze(1)  # (60000, 1, 28, 28) NCHW for the augmentation
    y_t = torch.from_numpy(y)
    x_float = (x_u8.float() / 255 - MEAN) / STD
    aug = compose(RandomCrop(PAD), FlipLR(0.5))
    pin = device.type == "cuda"

    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"MNIST train {tuple(x_u8.shape)}, {args.repeats} timed epochs after 1 warm-up"
    )
    print(f"{'loader':<34}{'batch':>6}{'aug':>5}{'median samples/s':>18}{'min..max':>22}")
    results: dict[tuple[str, int, bool], float] = {}
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        for augment in (False, True):
            dl = DeviceLoader(
                x_u8,
                y_t,
                batch_size=bs,
                device=device,
                mean=[MEAN],
                std=[STD],
                transform=aug if augment else None,
            )
            g = torch.Generator(device=device).manual_seed(0)
            td = DataLoader(
                TensorDataset(x_float, y_t), batch_size=bs, shuffle=True, pin_memory=pin
            )
            ps = DataLoader(
                PerSampleDataset(x_u8, y_t, augment),
                batch_size=bs,
                shuffle=True,
                num_workers=0,
                pin_memory=pin,
            )
            cases = [
                ("DeviceLoader", lambda dl=dl: run_epoch(dl, device)),
                (
                    "DataLoader(TensorDataset)",
                    lambda td=td, g=g, a=augment: run_epoch(td, device, aug if a else None, g),
                ),
                ("DataLoader(per-sample Dataset)", lambda ps=ps: run_epoch(ps, device)),
            ]
            for name, fn in cases:
                rates = measure(fn, args.repeats)
                med = statistics.median(rates)
                results[(name, bs, augment)] = med
                print(
                    f"{name:<34}{bs:>6}{'yes' if augment else 'no':>5}{med:>18,.0f}"
                    f"{f'{min(rates):,.0f}..{max(rates):,.0f}':>22}",
                    flush=True,
                )
    if 32 in {k[1] for k in results}:
        for augment in (False, True):
            r = (
                results[("DeviceLoader", 32, augment)]
                / results[("DataLoader(TensorDataset)", 32, augment)]
            )
            print(
                f"DeviceLoader / DataLoader(TensorDataset) at batch 32, "
                f"{'with' if augment else 'without'} augmentation: {r:.1f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
