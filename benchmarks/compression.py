"""Deep-compression pipeline on real MNIST, figures set beside Han et al.'s.

For LeNet-300-100 (784-300-100-10 MLP) and LeNet-5 (Caffe variant: conv 20 5x5, maxpool 2,
conv 50 5x5, maxpool 2, fc 500, relu, fc 10):

1. train dense (AdamW, cosine schedule, batch 128);
2. gradual magnitude pruning (Zhu & Gupta schedule, ``brisk.compress.GradualPruning``,
   global L1) to 92% zeros (8% of weights kept) while fine-tuning;
3. weight sharing (``share_weights``: k-means codebooks of 5 bits for fc and 8 bits for conv
   weights; skips of 5 / 8 bits; Huffman: ``save``'s defaults), codebook fine-tuning, then
   the Deep Compression file (``save``), reloaded and evaluated;
4. fold + static int8 (``fold``, ``quantize(mode='static', backend=--backend)``) of the
   pruned model: error and CPU latency at batch 1 and 256 against fp32 (``--threads``, 2 by
   default; median of 20 calls (200 at batch 1), min over 7 blocks alternating fp32 and
   int8, since the machine is shared). The int8 speed-up depends on the CPU's int8
   instructions: see ``brisk/compress/quantize.py`` (AVX512-VNNI Xeon vs AVX2 EPYC);
5. with ``--backends``: the int8 paths considered for ``quantize`` (torch.ao FX static,
   torch.ao dynamic, torchao eager int8, torchao PT2E + torch.compile exported for the
   timed batch size, and ``quantize(method='pt2e')``, exported once with a dynamic batch
   dimension) on the dense models, timed side by side -- the figures behind
   ``brisk/compress/quantize.py``'s choice of default ``method``.

Training runs on ``--train-threads`` (1 by default): with two OpenMP threads on a shared
2-core machine every small op spin-waits, and training LeNet-300-100 took several times
longer here for the same accuracy; timing uses ``--threads``.

Paper figures: Han et al. 2015 (Learning both weights and connections), Table 1;
Han, Mao & Dally 2016 (Deep Compression), Table 1.

Usage::

    python benchmarks/compression.py --cache benchmarks/out/compression/cache
                    # full: 16 min on 2 shared cores (AMD EPYC, AVX2), training at nice 19
    flock /tmp/brisk-bench.lock python benchmarks/compression.py \
        --cache benchmarks/out/compression/cache     # then timing only: ~45 s
    python benchmarks/compression.py --quick        # smoke run, a few minutes
    python benchmarks/compression.py --backends     # + the int8 paths compared
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
import os
import platform
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from brisk.compress import (  # noqa: E402
    GradualPruning,
    copy_model,
    fold,
    format_sparsity_report,
    load,
    make_permanent,
    quantize,
    save,
    share_weights,
    size_report,
    sparsity_report,
)
from brisk.compress.pipeline import latency_blocks  # noqa: E402

try:  # the engine, when the package imports whole
    from brisk import Trainer, datasets

    HAVE_TRAINER = True
except Exception:  # noqa: BLE001 -- any import failure means: use the plain loop
    Trainer, datasets, HAVE_TRAINER = None, None, False

PAPER = {
    "lenet300": {
        "dense": 1.64,
        "pruned": 1.59,
        "pruned_kept": 8.0,
        "pruned_ratio": 12,
        "dc_error": 1.58,
        "dc_ratio": 40,
    },
    "lenet5": {
        "dense": 0.80,
        "pruned": 0.77,
        "pruned_kept": 8.0,
        "pruned_ratio": 12,
        "dc_error": 0.74,
        "dc_ratio": 39,
    },
}
TARGETS = {
    "lenet300": {"pruned_error": 1.64, "dc_error": 1.70, "dc_ratio": 40},
    "lenet5": {"pruned_error": 0.80, "dc_error": 0.85, "dc_ratio": 39},
}
MEAN, STD = 0.1307, 0.3081  # MNIST pixel statistics
TIMING_THREADS = 2  # intra-op threads for latency (--threads); training uses --train-threads


# ---------------------------------------------------------------------- data
def _read_idx_gz(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(data_dir: str):
    if datasets is not None:
        return datasets.load_mnist(data_dir, download=False)
    d = Path(data_dir) / "mnist" if (Path(data_dir) / "mnist").is_dir() else Path(data_dir)
    r = lambda n: _read_idx_gz(d / n)  # noqa: E731
    return (
        (r("train-images-idx3-ubyte.gz"), r("train-labels-idx1-ubyte.gz").astype(np.int64)),
        (r("t10k-images-idx3-ubyte.gz"), r("t10k-labels-idx1-ubyte.gz").astype(np.int64)),
    )


def to_tensor(x: np.ndarray) -> torch.Tensor:
    return ((torch.from_numpy(np.array(x)).float() / 255.0 - MEAN) / STD).unsqueeze(
        1
    )  # (N, 1, 28, 28)


# -------------------------------------------------------------------- models
def lenet_300_100() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 300),
        nn.ReLU(),
        nn.Linear(300, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )


def lenet_5() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10),
    )  # fmt: skip


# ------------------------------------------------------------------ training
class _LoopTrainer:
    """What a callback needs from a trainer, for the plain loop."""

    def __init__(self, module):
        self.module, self.global_step, self.stop_training = module, 0, False


def fit(model, x, y, epochs, lr, callbacks=(), batch_size=128, weight_decay=0.0, seed=0):
    """AdamW with a cosine schedule over this phase; brisk.Trainer when it imports."""
    callbacks = list(callbacks)
    if HAVE_TRAINER:
        trainer = Trainer(
            model,
            optimizer=lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay),
            loss=lambda out, target: F.cross_entropy(out, target),
            schedule="cosine",
            device="cpu",
            seed=seed,
        )
        trainer.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=callbacks)
        return model
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    total = epochs * steps_per_epoch
    t = _LoopTrainer(model)
    for cb in callbacks:
        cb.set_trainer(t)
        cb.set_params({"epochs": epochs, "steps": steps_per_epoch, "verbose": 0})
        cb.on_train_begin()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * t.global_step / total))
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            t.global_step += 1
            for cb in callbacks:
                cb.on_train_batch_end(i)
        for cb in callbacks:
            cb.on_epoch_end(epoch, {})
    for cb in callbacks:
        cb.on_train_end()
    return model


@torch.no_grad()
def error_pct(model, x, y, batch=1000) -> float:
    model.eval()
    wrong = sum(
        int((model(x[i : i + batch]).argmax(1) != y[i : i + batch]).sum())
        for i in range(0, len(x), batch)
    )
    return 100.0 * wrong / len(x)


def latency_ms(models, x, reps=20, blocks=7) -> list[tuple[float, float]]:
    """Per model: (min over blocks of the median call time, max of the block medians), ms,
    with ``TIMING_THREADS`` intra-op threads (``brisk.compress.pipeline.latency_blocks``)."""
    models = [models] if isinstance(models, nn.Module) else list(models)
    before = torch.get_num_threads()
    torch.set_num_threads(TIMING_THREADS)
    try:
        meds = latency_blocks(models, x, reps, blocks)
    finally:
        torch.set_num_threads(before)
    return [(min(v), max(v)) for v in meds]


# ------------------------------------------------------------------ pipeline
def run(name, make, data, cfg, out_dir, log):
    (xtr, ytr), (xte, yte) = data
    res: dict = {"model": name}
    t0 = time.time()

    cache = cfg.get("cache")
    key = json.dumps(
        [len(xtr), [cfg[k] for k in ("dense_epochs", "prune_epochs", "share_epochs", "prune_freq")],
         cfg["fc_bits"], cfg["conv_bits"]]
    )  # fmt: skip

    def trained(stage, train):
        """``train()``'s model, or the one a run with the same settings saved in --cache."""
        if cache is None:
            return train()
        path = Path(cache) / f"{name}-{stage}-{zlib.crc32(key.encode()):08x}.pt"
        if path.exists():
            m = make()
            m.load_state_dict(torch.load(path, weights_only=True))
            log(f"[{name}] {stage}: trained model loaded from {path}")
            res.setdefault("from_cache", []).append(stage)
            return m
        m = train()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(m.state_dict(), path)
        return m

    torch.manual_seed(0)
    dense = trained("dense", lambda: fit(make(), xtr, ytr, cfg["dense_epochs"], lr=1e-3, seed=0))
    res["dense_error"] = error_pct(dense, xte, yte)
    res["params"] = sparsity_report(dense)["total"]["params"]
    log(f"[{name}] dense: {res['dense_error']:.2f}% error ({time.time() - t0:.0f}s)")

    # Gradual pruning to 92% zeros over the first 60% of the phase, then fine-tuning.
    def prune_phase():
        pruned = copy_model(dense)
        steps = cfg["prune_epochs"] * math.ceil(len(xtr) / 128)
        gp = GradualPruning(
            0.92,
            begin_step=0,
            end_step=int(0.6 * steps),
            frequency=cfg["prune_freq"],
            scope="global",
        )
        fit(pruned, xtr, ytr, cfg["prune_epochs"], lr=5e-4, callbacks=[gp], seed=1)
        return make_permanent(pruned)

    pruned = trained("pruned", prune_phase)
    rep = sparsity_report(pruned)
    res["kept_pct"] = 100.0 * (1 - rep["total"]["sparsity"])
    res["pruned_error"] = error_pct(pruned, xte, yte)
    log(
        f"[{name}] pruned: {res['pruned_error']:.2f}% error, {res['kept_pct']:.2f}% kept ({time.time() - t0:.0f}s)"
    )
    log(format_sparsity_report(rep))

    # Weight sharing + codebook fine-tuning, then the file.
    shared = share_weights(copy_model(pruned), bits=cfg["fc_bits"], conv_bits=cfg["conv_bits"])
    res["shared_error_before_ft"] = error_pct(shared, xte, yte)

    def codebook_phase():
        fit(shared, xtr, ytr, cfg["share_epochs"], lr=1e-4, seed=2)
        return make_permanent(shared)

    shared = trained("shared", codebook_phase)
    res["shared_error"] = error_pct(shared, xte, yte)
    path = out_dir / f"{name}.brisk"
    save(shared, path, bits=cfg["fc_bits"], conv_bits=cfg["conv_bits"])
    loaded = load(path, model=make())
    res["file_error"] = error_pct(loaded, xte, yte)
    with torch.no_grad():
        res["file_equals_memory"] = bool(torch.equal(loaded(xte[:512]), shared.eval()(xte[:512])))
    sr = size_report(shared, path)
    res.update(file_bytes=sr["compressed_bytes"], dense_bytes=sr["dense_bytes"], ratio=sr["ratio"])
    # Same file with biases as float16 (save's raw_dtype), evaluated from the file itself.
    p16 = out_dir / f"{name}.fp16.brisk"
    kw = dict(bits=cfg["fc_bits"], conv_bits=cfg["conv_bits"])
    res["file_bytes_fp16_raw"] = save(shared, p16, raw_dtype="float16", **kw)["bytes"]
    res["ratio_fp16_raw"] = res["dense_bytes"] / res["file_bytes_fp16_raw"]
    res["file_error_fp16_raw"] = error_pct(load(p16, model=make()), xte, yte)
    for ent in ("lzma", "zlib", "none"):
        p2 = out_dir / f"{name}.{ent}.brisk"
        res[f"file_bytes_{ent}"] = save(
            shared, p2, bits=cfg["fc_bits"], conv_bits=cfg["conv_bits"], entropy=ent
        )["bytes"]
    log(
        f"[{name}] shared ({cfg['fc_bits']}/{cfg['conv_bits']} bits): {res['shared_error_before_ft']:.2f}% -> "
        f"{res['shared_error']:.2f}% after codebook fine-tune; file {res['file_bytes']:,} B vs dense "
        f"{res['dense_bytes']:,} B = {res['ratio']:.1f}x, error from file {res['file_error']:.2f}% "
        f"(identical to memory: {res['file_equals_memory']})  ({time.time() - t0:.0f}s)"
    )

    # Fold + static int8 of the pruned fp32 model vs that model in fp32.
    fp32 = pruned.eval()
    be = cfg.get("backend")  # None: quantize's default (x86)
    q = quantize(fold(fp32), mode="static", calibration_data=xtr[:2048], backend=be)
    res["int8_backend"] = torch.backends.quantized.engine  # what quantize chose and set
    res["int8_error"] = error_pct(q, xte, yte)
    res["fp32_error"] = res["pruned_error"]
    qd = quantize(dense.eval(), mode="static", calibration_data=xtr[:2048], backend=be)
    res["dense_int8_error"] = error_pct(qd, xte, yte)
    for bs in (1, 256):
        xb = xte[:bs].contiguous()
        reps = cfg["lat_reps"] * (10 if bs == 1 else 1)
        (f32, f32w), (i8, i8w) = latency_ms([fp32, q], xb, reps, cfg["lat_blocks"])
        res[f"fp32_ms_b{bs}"], res[f"fp32_ms_b{bs}_worst"] = f32, f32w
        res[f"int8_ms_b{bs}"], res[f"int8_ms_b{bs}_worst"] = i8, i8w
        res[f"speedup_b{bs}"] = res[f"fp32_ms_b{bs}"] / res[f"int8_ms_b{bs}"]
    log(
        f"[{name}] int8: {res['int8_error']:.2f}% error (fp32 {res['fp32_error']:.2f}%); batch 256 "
        f"{res['fp32_ms_b256']:.2f} -> {res['int8_ms_b256']:.2f} ms ({res['speedup_b256']:.2f}x), batch 1 "
        f"{res['fp32_ms_b1']:.3f} -> {res['int8_ms_b1']:.3f} ms ({res['speedup_b1']:.2f}x)  ({time.time() - t0:.0f}s)"
    )
    if cfg.get("backends"):
        res["backends"] = compare_backends(name, dense, xtr, xte, yte, log)
    res["seconds"] = time.time() - t0
    return res


def compare_backends(name, dense, xtr, xte, yte, log) -> dict:
    """The int8 paths considered for ``brisk.compress.quantize``: test error and CPU
    latency at batch 256 and 1 of the dense model through each of them."""
    import warnings

    warnings.filterwarnings("ignore")
    out: dict = {}
    PT2E = "torchao PT2E x86 + compile"  # noqa: N806

    def ao_dynamic(m):
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(m), {nn.Linear}, dtype=torch.qint8)

    def torchao(config):
        def make(m):
            from torchao.quantization import quantize_

            q = copy.deepcopy(m)
            quantize_(q, config())
            return q

        return make

    def torchao_pt2e(m, example):
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        ex = torch.export.export(copy.deepcopy(m), (example,)).module()
        qz = xiq.X86InductorQuantizer()
        qz.set_global(xiq.get_default_x86_inductor_quantization_config())
        p = prepare_pt2e(ex, qz)
        bs = len(example)  # the exported graph takes this batch size only
        for i in range(0, 2048, bs):
            p(xtr[i : i + bs])
        return _Wrap(torch.compile(convert_pt2e(p)))  # exported and compiled for this batch size

    cands = {
        "fp32": lambda m: m,
        "torch.ao FX static x86 (brisk fx)": lambda m: quantize(
            m, "static", calibration_data=xtr[:2048], method="fx"
        ),
        "torch.ao dynamic": ao_dynamic,
    }
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig

        cands["torchao int8 dyn-act/weight"] = torchao(Int8DynamicActivationInt8WeightConfig)
        cands["torchao int8 weight-only"] = torchao(Int8WeightOnlyConfig)
        cands[PT2E] = torchao_pt2e
        # brisk's own: exported once with a dynamic batch dim, compiled per batch size
        cands["torchao PT2E (brisk pt2e, any batch)"] = lambda m: quantize(
            m, "static", calibration_data=xtr[:2048], method="pt2e"
        )
    except Exception as e:  # noqa: BLE001 -- torchao is optional
        log(f"[{name}] torchao not importable ({type(e).__name__}); comparing torch.ao paths only")
    n = len(xte) // 256 * 256
    built: dict = {}
    for bs in (256, 1):  # PT2E models are exported for one batch size: built for each
        xb = xte[:bs].contiguous()
        for label, make in cands.items():
            if label in built and label != PT2E:
                continue
            try:
                t0 = time.time()
                built[label] = make(dense.eval(), xb) if label == PT2E else make(dense.eval())
                if bs == 256:
                    err = error_pct(built[label], xte[:n], yte[:n], batch=256)
                    out[label] = {"error": err}
                    log(f"[{name}] {label:32s} error {err:.2f}% on {n} ({time.time() - t0:.1f}s)")
            except Exception as e:  # noqa: BLE001 -- report a failing path, keep the others
                log(f"[{name}] {label:32s} FAILED: {type(e).__name__}: {str(e)[:200]}")
                built.pop(label, None)
        # All paths timed side by side, their blocks alternating.
        labels = [k for k in built if k in out]
        try:
            times = latency_ms([built[k] for k in labels], xb, reps=20 if bs == 256 else 200)
        except Exception as e:  # noqa: BLE001
            log(f"[{name}] timing at batch {bs} FAILED: {type(e).__name__}: {str(e)[:200]}")
            continue
        for label, (ms, worst) in zip(labels, times, strict=True):
            out[label][f"ms_b{bs}"] = ms
            log(f"[{name}] {label:32s} batch {bs:3d}: {ms:8.3f} ms (worst block {worst:.3f})")
    return out


class _Wrap(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.__dict__["fn"] = fn  # not a submodule: exported models refuse .eval()

    def forward(self, x):
        return self.fn(x)


def table(results) -> str:
    lines = [
        "| model | figure | brisk | paper | target | met |",
        "|---|---|---|---|---|---|",
    ]

    def row(model, fig, ours, paper, target, ok):
        met = "-" if ok is None else ("yes" if ok else "NO")
        lines.append(f"| {model} | {fig} | {ours} | {paper} | {target} | {met} |")

    for r in results:
        n = r["model"]
        p, t = PAPER[n], TARGETS[n]
        label = "LeNet-300-100" if n == "lenet300" else "LeNet-5"
        row(label, "dense error", f"{r['dense_error']:.2f}%", f"{p['dense']:.2f}%", "-", None)
        row(
            label,
            "pruned: weights kept / error",
            f"{r['kept_pct']:.2f}% / {r['pruned_error']:.2f}%",
            f"{p['pruned_kept']:.0f}% / {p['pruned']:.2f}% ({p['pruned_ratio']}x)",
            f"<= 8% / <= {t['pruned_error']:.2f}%",
            r["kept_pct"] <= 8.0 + 1e-9 and r["pruned_error"] <= t["pruned_error"],
        )
        row(
            label,
            "compressed file: ratio / error",
            f"{r['ratio']:.1f}x / {r['file_error']:.2f}%",
            f"{p['dc_ratio']}x / {p['dc_error']:.2f}%",
            f">= {t['dc_ratio']}x / <= {t['dc_error']:.2f}%",
            r["ratio"] >= t["dc_ratio"] and r["file_error"] <= t["dc_error"],
        )
        row(
            label,
            "  same file, biases as float16",
            f"{r['ratio_fp16_raw']:.1f}x / {r['file_error_fp16_raw']:.2f}%",
            "-",
            "-",
            None,
        )
        row(
            label,
            "  file bytes: huffman / lzma / zlib / fixed-width",
            f"{r['file_bytes']:,} / {r['file_bytes_lzma']:,} / {r['file_bytes_zlib']:,} / "
            f"{r['file_bytes_none']:,}",
            "-",
            "-",
            None,
        )
        row(
            label,
            f"fold+int8 ({r.get('int8_backend', 'x86')}) vs fp32, batch 256",
            f"{r['fp32_ms_b256']:.2f} -> {r['int8_ms_b256']:.2f} ms "
            f"({r['speedup_b256']:.2f}x), error {r['fp32_error']:.2f} -> {r['int8_error']:.2f}%",
            "-",
            ">= 2x, <= 0.3 pt",
            r["speedup_b256"] >= 2 and r["int8_error"] - r["fp32_error"] <= 0.3,
        )
        row(
            label,
            f"fold+int8 ({r.get('int8_backend', 'x86')}) vs fp32, batch 1",
            f"{r['fp32_ms_b1']:.3f} -> {r['int8_ms_b1']:.3f} ms ({r['speedup_b1']:.2f}x)",
            "-",
            "-",
            None,
        )
    backends = [r for r in results if r.get("backends")]
    if backends:
        lines += [
            "",
            "int8 paths on the dense model (CPU, alternating blocks; error on a multiple of 256)",
            "",
            "| model | path | error | ms @ batch 256 | ms @ batch 1 |",
            "|---|---|---|---|---|",
        ]
        for r in backends:
            label = "LeNet-300-100" if r["model"] == "lenet300" else "LeNet-5"
            for path, v in r["backends"].items():
                b256, b1 = v.get("ms_b256"), v.get("ms_b1")
                lines.append(
                    f"| {label} | {path} | {v['error']:.2f}% | "
                    f"{'-' if b256 is None else f'{b256:.3f}'} | {'-' if b1 is None else f'{b1:.3f}'} |"
                )
    return "\n".join(lines)


def cpu_line() -> str:
    """The CPU model and the flags int8 speed depends on (the int8 figures are per CPU)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"cpu: {platform.processor() or platform.machine()}"
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                  if ln.startswith("model name")), "?")  # fmt: skip
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines()
                  if ln.startswith("flags")), [])  # fmt: skip
    want = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "avx_vnni")
    return f"cpu: {model}; int8-relevant flags: {' '.join(f for f in want if f in flags) or 'none'}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small subset and few epochs (< 3 min)")
    ap.add_argument("--data-dir", default=os.environ.get("BRISK_DATA_DIR", "/work/shared/data"))
    ap.add_argument("--models", default="lenet300,lenet5")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument(
        "--cache",
        default=None,
        help="folder for the trained models: saved there, and loaded instead of trained "
        "when a run with the same settings saved them (re-measure without retraining)",
    )
    ap.add_argument("--threads", type=int, default=2, help="threads for latency (default 2)")
    ap.add_argument(
        "--backend",
        default=None,
        help="quantized engine for the fold+int8 rows: x86, fbgemm, onednn, qnnpack "
        "(default: quantize's, x86)",
    )
    ap.add_argument(
        "--train-threads",
        type=int,
        default=1,
        help="threads for training (default 1: on a shared 2-core machine two OpenMP "
        "threads spin-wait on every small op; one trained LeNet-300-100 several times "
        "faster here, with the same accuracy figures)",
    )
    ap.add_argument(
        "--backends",
        action="store_true",
        help="also compare int8 paths (torch.ao, torchao if installed) on the dense models",
    )
    args = ap.parse_args(argv)
    global TIMING_THREADS
    TIMING_THREADS = args.threads
    torch.set_num_threads(args.train_threads)
    log = lambda s: print(s, flush=True)  # noqa: E731

    (xtr, ytr), (xte, yte) = load_mnist(args.data_dir)
    xtr, xte = to_tensor(xtr), to_tensor(xte)
    ytr, yte = torch.from_numpy(np.asarray(ytr)).long(), torch.from_numpy(np.asarray(yte)).long()
    if args.quick:
        g = torch.Generator().manual_seed(0)
        tr, te = (
            torch.randperm(len(xtr), generator=g)[:8000],
            torch.randperm(len(xte), generator=g)[:2000],
        )
        xtr, ytr, xte, yte = xtr[tr], ytr[tr], xte[te], yte[te]
    base = {
        "lenet300": dict(dense_epochs=20, prune_epochs=20, share_epochs=2),
        "lenet5": dict(dense_epochs=12, prune_epochs=12, share_epochs=1),
    }
    for c in base.values():
        c.update(
            prune_freq=100,
            fc_bits=5,
            conv_bits=8,
            lat_reps=20,
            lat_blocks=7,
            backends=args.backends,
            backend=args.backend,
            cache=args.cache,
        )
        if args.quick:
            c.update(
                dense_epochs=3,
                prune_epochs=3,
                prune_freq=20,
                share_epochs=1,
                lat_reps=5,
                lat_blocks=3,
            )
    makers = {"lenet300": lenet_300_100, "lenet5": lenet_5}
    log(
        f"torch {torch.__version__}, {args.threads} threads for timing, {args.train_threads} for "
        f"training, {platform.processor() or platform.machine()}, "
        f"training with {'brisk.Trainer' if HAVE_TRAINER else 'a plain PyTorch loop (brisk.Trainer did not import)'}; "
        f"train {len(xtr)}, test {len(xte)}{' (quick subset)' if args.quick else ''}; load {os.getloadavg()}"
    )
    log(cpu_line())
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            if name not in makers:
                raise SystemExit(f"--models: unknown model {name!r}; choose from {sorted(makers)}")
            results.append(
                run(name, makers[name], ((xtr, ytr), (xte, yte)), base[name], Path(tmp), log)
            )
    log("")
    log(table(results))
    for r in results:
        if r.get("from_cache"):
            log(f"{r['model']}: trained models loaded from --cache: {', '.join(r['from_cache'])}")
    log(f"load average at the end {os.getloadavg()}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
