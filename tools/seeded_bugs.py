"""Put back, one at a time, the realistic bugs that once passed the whole suite (issue 10),
and check that the tests written for each now fail.

Each bug is a one-line change to a copy of ``src/`` in a temporary folder; the named tests
run against that copy (``PYTHONPATH`` puts it ahead of the editable install) and must fail.
The unchanged copy must pass the same tests first, so a failure is the bug's doing.

    python tools/seeded_bugs.py            # all bugs; exit status 1 if any survives
    python tools/seeded_bugs.py --list     # the bugs and their tests
    python tools/seeded_bugs.py top_k      # only the bugs whose name contains 'top_k'

Run by ``make seeded-bugs``; not part of CI (about two minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bug:
    name: str
    file: str  # relative to src/brisk
    old: str  # must occur exactly once
    new: str
    tests: tuple[str, ...]


E = "tests/engine/test_engine_options.py::"
BUGS = [
    Bug("accumulate_weight_removed", "engine/trainer.py",
        "weight = 1.0 if accumulate == 1 else xb.shape[0] / step_mod.group_size(sizes, i, accumulate)",
        "weight = 1.0",
        (E + "test_accumulated_micro_batches_make_one_step_of_the_group_mean",
         E + "test_accumulate_equals_the_big_batch_hand_loop")),
    Bug("same_shuffle_every_epoch_trainer", "engine/trainer.py",
        "loader.set_epoch(index)", "loader.set_epoch(0)",
        (E + "test_each_epoch_is_a_new_permutation_reproducible_from_the_seed",)),
    Bug("same_shuffle_every_epoch_loader", "data/loader.py",
        "g.manual_seed(_mix(self.seed, epoch))", "g.manual_seed(_mix(self.seed, 0))",
        (E + "test_each_epoch_is_a_new_permutation_reproducible_from_the_seed",)),
    Bug("schedule_read_one_step_late", "engine/step.py",
        "factor = schedule(schedule_step)", "factor = schedule(max(schedule_step - 1, 0))",
        (E + "test_schedule_is_read_at_each_optimizer_step",)),
    Bug("schedule_per_batch_not_per_step", "engine/trainer.py",
        "step_mod.optimizer_step(self, schedule, epoch * optimizer_steps + step_in_epoch)",
        "step_mod.optimizer_step(self, schedule, epoch * n_batches + i)",
        (E + "test_schedule_counts_optimizer_steps_not_batches_when_accumulating",)),
    Bug("schedule_sized_in_batches", "engine/trainer.py",
        "schedule = self._build_schedule(schedule, epochs, optimizer_steps)",
        "schedule = self._build_schedule(schedule, epochs, n_batches)",
        (E + "test_named_schedule_is_sized_in_optimizer_steps_when_accumulating",)),
    Bug("warmup_ignored", "engine/trainer.py",
        "self.warmup = int(warmup)", "self.warmup = 0",
        (E + "test_warmup_rates_per_step", E + "test_warmup_without_a_schedule_then_constant")),
    Bug("rng_not_restored", "engine/trainer.py",
        'torch.set_rng_state(state["rng"]["torch"])', "pass",
        (E + "test_load_checkpoint_restores_the_random_number_generator",
         E + "test_resume_from_an_epoch_checkpoint_equals_the_uninterrupted_run")),
    Bug("augment_on_validation", "engine/trainer.py",
        "False, seed, sample_weight=val_sw)", "False, seed, augment, sample_weight=val_sw)",
        (E + "test_training_augmentation_never_reaches_validation",)),
    Bug("checkpoint_ignores_mode", "engine/callbacks.py",
        "self.save_freq = save_freq\n        self._maximize = _monitor_mode(monitor, mode)",
        "self.save_freq = save_freq\n        self._maximize = _monitor_mode(monitor, 'auto')",
        ("tests/engine/test_callbacks.py::test_model_checkpoint_best_only_follows_mode",)),
    Bug("checkpoint_always_minimises", "engine/callbacks.py",
        "current > self.best if self._maximize else current < self.best):",
        "current < self.best if True else current < self.best):",
        ("tests/engine/test_callbacks.py::test_model_checkpoint_best_only_follows_mode",)),
    Bug("top_k_uses_k_minus_1", "metrics.py",
        "top = y_pred.topk(k, dim=-1).indices", "top = y_pred.topk(max(k - 1, 1), dim=-1).indices",
        ("tests/test_metrics.py::test_top_k_hits_exactly_the_first_k_ranks",
         "tests/engine/test_trainer.py::test_plain_module_loss_and_metrics_match_hand_computation")),
    Bug("binary_accuracy_threshold_0", "metrics.py",
        "hit = (y_pred > self.threshold)", "hit = (y_pred > 0)",
        ("tests/test_metrics.py::test_binary_accuracy_thresholds_probabilities_at_one_half",)),
    Bug("binary_accuracy_on_logits", "engine/trainer.py",
        "if self._post is not None and not self._argmax_only:",
        "if False:",
        ("tests/test_metrics.py::test_engine_gives_binary_accuracy_the_probabilities",
         "tests/engine/test_bad_input.py::test_categorical_and_binary_targets_checked")),
    Bug("sparse_ce_probabilities_softmaxed_again", "losses.py",
        "return F.nll_loss(_log_probs(y_pred, 1), y_true",
        "return F.nll_loss(torch.log_softmax(y_pred, dim=1), y_true",
        ("tests/test_losses.py::test_sparse_cross_entropy_from_probabilities_is_minus_log_p",)),
    Bug("fold_ignores_other_users", "compress/fold.py",
        'calls[n.target] == 1 and len(n.users) == 1', "calls[n.target] == 1",
        ("tests/compress/test_fold.py::test_bn_is_not_merged_into_a_layer_whose_output_feeds_another_branch",)),
    Bug("evaluate_counts_wrong", "engine/trainer.py",
        "self._counts[i] += int(c)", "self._counts[i] += int(c) + 1",
        (E + "test_evaluate_equals_an_independent_numpy_computation",
         "tests/recipes/test_recipes.py::test_every_recipe_runs_end_to_end_on_a_slice")),
    Bug("clip_value_ignored", "engine/step.py",
        "torch.nn.utils.clip_grad_value_(params, trainer.clip_value)", "pass",
        (E + "test_gradient_clipping_equals_torch_clip",)),
    Bug("cuda_check_removed", "engine/trainer.py",
        'if dev.type == "cuda" and not torch.cuda.is_available():',
        "if False:",
        ("tests/engine/test_bad_input.py::test_module_type_and_uncompiled_fit",)),
    # issue 11: Keras fidelity
    Bug("keras_loss_order_swapped", "engine/trainer.py",
        "return out, self.loss_fn(yb, out.float(), sample_weight)",
        "return out, self.loss_fn(out.float(), yb, sample_weight)",
        ("tests/keras_parity/test_fidelity.py::test_a_custom_loss_at_the_keras_front_gets_y_true_then_y_pred",)),
    Bug("trainable_flags_ignored", "engine/trainer.py",
        "apply_trainable(self.module)  # the trainable flags as they are now", "pass",
        ("tests/keras_parity/test_fidelity.py::test_trainable_works_on_any_torch_module",)),
    Bug("frozen_batchnorm_trains", "engine/freeze.py",
        "if not effective and isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:",
        "if False:",
        ("tests/keras_parity/test_fidelity.py::test_trainable_works_on_any_torch_module",)),
    Bug("early_stopping_one_epoch_late", "engine/callbacks.py",
        "if self.wait >= self.patience and epoch > 0:", "if self.wait > self.patience:",
        ("tests/engine/test_callbacks.py::test_early_stopping_epoch_count_matches_keras",)),
    Bug("uint8_divided_by_255", "engine/trainer.py",
        "return xb.float()  # the precision policy",
        "return (xb.float() / 255 if xb.dtype == torch.uint8 else xb.float())  # the precision policy",
        ("tests/keras_parity/test_fidelity.py::test_uint8_arrays_reach_the_model_unscaled_as_in_keras",)),
    Bug("modes_not_restored_after_evaluate", "engine/trainer.py",
        "            for m, mode in modes:\n                m.training = mode",
        "            for m, mode in modes:\n                pass",
        ("tests/keras_parity/test_fidelity.py::test_evaluate_and_predict_from_a_callback_leave_the_training_modes_as_they_were",)),
    Bug("accuracy_from_the_loss_name", "metrics.py",
        "        if p_last == 1:\n            return BinaryAccuracy()",
        "        if p_last == 1:\n            return SparseCategoricalAccuracy()",
        ("tests/keras_parity/test_fidelity.py::test_accuracy_of_a_sigmoid_output_with_mse_is_binary_accuracy",)),
]


def run_tests(src: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "-m", "not slow", *tests]
    try:
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, "timeout"
    lines = (p.stdout + p.stderr).strip().splitlines()
    return p.returncode, lines[-1] if lines else ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("only", nargs="*", help="run only bugs whose name contains one of these")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per pytest run")
    args = ap.parse_args(argv)
    bugs = [b for b in BUGS if not args.only or any(o in b.name for o in args.only)]
    if args.list:
        for b in bugs:
            print(f"{b.name}: src/brisk/{b.file}\n  " + "\n  ".join(b.tests))
        return 0
    survivors = []
    with tempfile.TemporaryDirectory(prefix="brisk-seeded-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(REPO / "src" / "brisk", src / "brisk",
                        ignore=shutil.ignore_patterns("__pycache__"))
        # the clean copy must pass every test used below
        tests = tuple(dict.fromkeys(t for b in bugs for t in b.tests))
        rc, last = run_tests(src, tests, args.timeout * 4)
        print(f"{'clean copy':40s} {'passes' if rc == 0 else 'FAILS'}  ({last})")
        if rc != 0:
            return 2
        for b in bugs:
            path = src / "brisk" / b.file
            original = path.read_text()
            if original.count(b.old) != 1:
                print(f"{b.name:40s} PATCH DOES NOT APPLY ({original.count(b.old)} matches)")
                survivors.append(b.name)
                continue
            path.write_text(original.replace(b.old, b.new))
            t0 = time.perf_counter()
            rc, last = run_tests(src, b.tests, args.timeout)
            path.write_text(original)
            caught = rc == 1  # a test failed (2: interrupted/collection error, 5: no tests)
            print(f"{b.name:40s} {'caught' if caught else 'SURVIVED'}  "
                  f"({time.perf_counter() - t0:.0f} s; {last})")
            if not caught:
                survivors.append(b.name)
    print(f"\n{len(bugs) - len(survivors)}/{len(bugs)} seeded bugs caught")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
