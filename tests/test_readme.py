"""The README's Python examples run as written (in order, in one namespace), on the real
MNIST files, from a scratch folder. A README example that breaks fails here."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples_for_the_public_api():
    text = "\n".join(python_blocks())
    for name in ("brisk.Sequential", "brisk.Trainer", "brisk.DeviceLoader", "brisk.augment",
                 "schedules", "lr_find", "EarlyStopping", "compress.prune", "load_model",
                 "brisk.tune", "brisk.finetune", "applications.get"):
        assert name in text, name


def test_readme_examples_run(tmp_path, monkeypatch, data_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BRISK_DATA_DIR", str(data_dir))
    namespace: dict = {"__name__": "readme"}
    for i, block in enumerate(python_blocks()):
        exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
    assert 0.85 < namespace["acc"] <= 1.0  # the quick start's test accuracy after 1 epoch
    assert (tmp_path / "lr_find.png").is_file() and (tmp_path / "mlp.brisk").is_file()
    assert {p.name for p in (tmp_path / "logs").iterdir()} == {"train", "validation"}
    assert namespace["result"]["test_accuracy"] > 0.95  # one epoch of the mnist-mlp recipe
    search = namespace["search"]  # brisk.tune's example: 3 trials, batch size fixed at 64
    assert len(search.rows) == 3 and {r["batch_size"] for r in search.rows} == {64}
    assert search.best_command.startswith("brisk train --dataset digits ")
    # what the comments in the README claim
    summary = namespace["small_net"].summary(print_fn=None)
    assert "Trainable params: 9\n" in summary and "Non-trainable params: 40\n" in summary
    text_summary = namespace["text_model"].summary(print_fn=None)  # 80 + 1,600 + 17
    assert "Total params: 1,697\n" in text_summary and " 1,600 " in text_summary
    sched = namespace["sched"]
    assert (sched(0), sched(100), sched(1100)) == (0.0, 1.0, 0.0)
    report = namespace["compress"].sparsity_report(namespace["small"])
    assert abs(report["total"]["sparsity"] - 0.9) < 1e-3
    assert namespace["compress"].size_report(namespace["small"], "mlp.brisk")["ratio"] > 10
    # the fine-tuning example: both phases ran, phase 2 at most 1 epoch, logits for 10 classes
    tuned = namespace["tuned"]
    assert len(tuned.head_history.history["val_accuracy"]) == 2
    assert len(tuned.finetune_history.history["loss"]) == 1
    assert namespace["probs"].shape == (4, 10)
