"""pytest plugin for `make mutate` (loaded with `-p tools.mutation.scope`): each mutant is
judged by the unit tests of its own module.

mutmut runs, for a mutant, every selected test that called the mutated function. For the
engine's inner functions that is ~100 end-to-end tests and ~9 s a survivor, which put a full
run at ~80 min on 2 cores. Here a mutant in module M only runs the tests in ``SCOPE[M]``
(the files that test M directly), which is also the question mutation testing asks: do
M's own tests notice when M is wrong? Outside a mutant run (``MUTANT_UNDER_TEST`` unset,
as in mutmut's stats and clean runs) nothing is deselected.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

E, OPT, K = "tests/engine/", "tests/optim/", "tests/keras_parity/"
# the engine's own tests, and the Keras-front tests of what fit does (weights, steps, clipping)
ENGINE = (E + "test_trainer.py", E + "test_engine_options.py", E + "test_bad_input.py",
          K + "test_callbacks_contract.py", K + "test_steps.py", K + "test_model_api.py",
          K + "test_fidelity.py")
SCOPE: dict[str, tuple[str, ...]] = {
    # + the tests of its checkpoint methods (state_dict, load_state_dict, _check_state,
    # _continuation, save/load_checkpoint): without them 400 of its mutants survived
    "brisk.engine.trainer": ENGINE + (E + "test_resume.py", E + "test_checkpoint_exact.py",
                                      E + "test_file_integrity.py",
                                      E + "test_distributed_paths.py",
                                      E + "test_trainer_state_exact.py",
                                      E + "test_fit_position_exact.py",
                                      # on_nan='restore' (_good_state, _restore_good): the
                                      # exact tests live with the callbacks; a node-id prefix
                                      E + "test_callbacks.py::test_on_nan",
                                      # which batch hooks fit dispatches (_has_hook)
                                      E + "test_callbacks.py::test_batch_hooks",
                                      E + "test_callbacks.py::test_fit_calls_the_hooks"),
    # fit's checks and its step, moved out of trainer.py: the same tests judge them
    "brisk.engine.inputs": ENGINE + (E + "test_inputs_exact.py",),
    "brisk.engine.step": ENGINE + (E + "test_step_and_freeze_exact.py",
                                   E + "test_distributed_paths.py"),
    # E + "test_callbacks": a prefix (test_callbacks.py, _exact.py, _edges.py)
    "brisk.engine.callbacks": (E + "test_callbacks", OPT + "test_schedule",  # + plateau
                               K + "test_callbacks_contract.py", K + "test_tensorboard.py",
                               E + "test_resume.py",
                               E + "test_distributed_paths.py"),
    "brisk.engine.checkpoint": (E + "test_callbacks.py", E + "test_engine_options.py",
                                E + "test_trainer.py", E + "test_file_integrity.py",
                                E + "test_checkpoint_exact.py",
                                E + "test_resume.py",
                                # sharded (FSDP) folders: save/check/load_sharded
                                E + "test_distributed_paths.py",
                                E + "test_checkpoint_sharded.py"),
    # a prefix: test_precision.py, test_precision_auto.py, test_precision_exact.py
    "brisk.engine.precision": (E + "test_precision",),
    "brisk.engine.threads": (E + "test_threads",),  # a prefix: + test_threads_exact.py
    "brisk.engine.progress": (E + "test_progress.py", E + "test_trainer.py"),
    "brisk.engine.lr_find": (E + "test_lr_find",),
    "brisk.engine.freeze": (K + "test_fidelity.py", E + "test_step_and_freeze_exact.py"),
    "brisk.losses": ("tests/test_losses.py", K + "test_fidelity.py",
                     "tests/test_losses_metrics_exact.py", "tests/test_losses_metrics_edges.py"),
    "brisk.metrics": ("tests/test_metrics.py", K + "test_callbacks_contract.py",
                      K + "test_fidelity.py", "tests/test_losses_metrics_exact.py",
                      "tests/test_losses_metrics_edges.py"),
    # Keras schedule objects and clipping arguments are tested at the Keras front
    "brisk.optim": (OPT, K + "test_model_api.py"),
    "brisk.data.loader": ("tests/data/test_data_loader",  # also test_data_loader_edges.py
                          "tests/data/test_loader_exact.py"),
    "brisk.compress.fold": ("tests/compress/test_fold.py",),
    # a prefix: test_quantize.py (fx, dynamic, qat, load_quantized) and
    # test_quantize_pt2e.py (method='pt2e')
    "brisk.compress.quantize": ("tests/compress/test_quantize",),
}


def scope_for(mutant: str) -> tuple[str, ...] | None:
    """The test-file prefixes for a mutant name such as 'brisk.losses.x__reduce__mutmut_1'."""
    best = None
    for module, files in SCOPE.items():
        if mutant.startswith(module + ".") and (best is None or len(module) > len(best[0])):
            best = (module, files)
    return best[1] if best else None


def pytest_collection_modifyitems(config, items):
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if not mutant or mutant in ("fail", "stats", "list_all_tests"):
        return
    files = scope_for(mutant)
    if files is None:
        return
    keep, drop = [], []
    for item in items:
        (keep if item.nodeid.startswith(files) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def module_of(source: str) -> str:
    """'src/brisk/engine/trainer.py' -> 'brisk.engine.trainer'."""
    parts = list(Path(source).with_suffix("").parts)
    if parts and parts[0] == "src":
        parts = parts[1:]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def tests_hash(source: str, root: Path = Path(".")) -> str:
    """SHA-256 of what judges ``source``'s mutants: its ``SCOPE`` entry and the text of the
    test files it names (all of tests/ for a module outside ``SCOPE``), with every
    conftest.py. ``retest.py`` re-tests a module's survivors only when this changed."""
    files = scope_for(module_of(source) + ".x")
    prefixes = None if files is None else tuple(f.split("::", 1)[0] for f in files)
    h = hashlib.sha256(repr(files).encode())
    for path in sorted((root / "tests").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if prefixes is None or rel.startswith(prefixes) or path.name == "conftest.py":
            h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()
