"""tools/mutation/retest.py: `make mutate`'s incremental step resets only live verdicts."""

import importlib.util
import json
from pathlib import Path

SPEC = importlib.util.spec_from_file_location(
    "retest", Path(__file__).resolve().parents[2] / "tools" / "mutation" / "retest.py")
retest = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(retest)


def test_survivors_and_no_tests_are_reset_the_rest_kept(tmp_path, capsys):
    meta = tmp_path / "mutants" / "src" / "brisk" / "losses.py.meta"
    meta.parent.mkdir(parents=True)
    codes = {"m_1": 0, "m_2": 1, "m_3": 33, "m_4": None, "m_5": 36, "m_6": -24, "m_7": 5}
    meta.write_text(json.dumps({"exit_code_by_key": codes, "hash_by_function_name": {"f": "ab"}}))
    clean = tmp_path / "mutants" / "src" / "brisk" / "metrics.py.meta"
    clean.write_text(json.dumps({"exit_code_by_key": {"k_1": 1}}))
    before = clean.read_text()

    assert retest.main(["--mutants", str(tmp_path / "mutants"), "--dry-run"]) == 0
    assert "would reset 3 mutant(s) in 1 file(s)" in capsys.readouterr().out
    assert json.loads(meta.read_text())["exit_code_by_key"] == codes  # dry run: untouched

    assert retest.main(["--mutants", str(tmp_path / "mutants")]) == 0
    assert "reset 3 mutant(s) in 1 file(s)" in capsys.readouterr().out
    data = json.loads(meta.read_text())
    assert data["exit_code_by_key"] == {"m_1": None, "m_2": 1, "m_3": None, "m_4": None,
                                        "m_5": 36, "m_6": -24, "m_7": None}
    assert data["hash_by_function_name"] == {"f": "ab"}  # mutmut's other state kept
    assert clean.read_text() == before  # nothing live: the file is not rewritten


def test_no_previous_run(tmp_path, capsys):
    assert retest.main(["--mutants", str(tmp_path / "none")]) == 0
    assert "no previous run" in capsys.readouterr().out


def _load(name):
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).resolve().parents[2] / "tools" / "mutation" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_cache_keeps_verdicts_and_hashes_and_restores_what_mutmut_loads(tmp_path):
    cache_mod = _load("cache")
    mutants, cache = tmp_path / "mutants", tmp_path / "cache"
    meta = mutants / "src" / "brisk" / "losses.py.meta"
    meta.parent.mkdir(parents=True)
    full = {"exit_code_by_key": {"m_1": 1, "m_2": 0, "m_3": None},
            "hash_by_function_name": {"f": "ab"}, "type_check_error_by_key": {},
            "durations_by_key": {"m_1": 0.5}, "estimated_durations_by_key": {"m_1": 0.4}}
    meta.write_text(json.dumps(full))
    assert cache_mod.save(mutants, cache) == 1
    hashes = {"src/brisk/losses.py": _load("scope").tests_hash("src/brisk/losses.py")}
    assert json.loads((cache / "tests-hash.json").read_text()) == hashes
    assert json.loads((mutants / "tests-hash.json").read_text()) == hashes
    cached = json.loads((cache / "src" / "brisk" / "losses.py.json").read_text())
    assert cached == {"exit_code_by_key": {"m_1": 1, "m_2": 0, "m_3": None},
                      "hash_by_function_name": {"f": "ab"}, "type_check_error_by_key": {}}
    assert cache_mod.restore(mutants, cache) == 0  # a local run's .meta wins
    meta.unlink()
    (mutants / "tests-hash.json").unlink()
    assert cache_mod.restore(mutants, cache) == 1
    assert json.loads((mutants / "tests-hash.json").read_text()) == hashes
    restored = json.loads(meta.read_text())
    # every key mutmut's SourceFileMutationData.load pops (durations measured again)
    assert restored == {**cached, "durations_by_key": {}, "estimated_durations_by_key": {}}


def test_survivors_are_kept_where_the_tests_that_judge_them_did_not_change(tmp_path, capsys):
    mutants = tmp_path / "mutants"
    for name in ("losses", "metrics"):
        meta = mutants / "src" / "brisk" / f"{name}.py.meta"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"exit_code_by_key": {"m_1": 0, "m_2": 1, "m_3": 5}}))
    (mutants / "tests-hash.json").write_text(json.dumps(
        {"src/brisk/losses.py": "h-losses", "src/brisk/metrics.py": "old"}))
    now = {"src/brisk/losses.py": "h-losses", "src/brisk/metrics.py": "new"}
    counts, kept = retest.reset_live(mutants, tests_hash=now.__getitem__)
    assert counts == {str(mutants / "src" / "brisk" / "metrics.py.meta"): 2} and kept == 2
    codes = lambda n: json.loads((mutants / "src" / "brisk" / f"{n}.py.meta").read_text())[  # noqa: E731
        "exit_code_by_key"]
    assert codes("losses") == {"m_1": 0, "m_2": 1, "m_3": 5}  # same tests: same verdicts
    assert codes("metrics") == {"m_1": None, "m_2": 1, "m_3": None}
    counts, kept = retest.reset_live(mutants, everything=True, tests_hash=now.__getitem__)
    assert counts == {str(mutants / "src" / "brisk" / "losses.py.meta"): 2} and kept == 0


def test_tests_hash_follows_the_scoped_test_files_only(tmp_path):
    scope = _load("scope")
    assert scope.module_of("src/brisk/engine/trainer.py") == "brisk.engine.trainer"
    assert scope.module_of("src/brisk/optim/__init__.py") == "brisk.optim"
    (tmp_path / "tests" / "engine").mkdir(parents=True)
    threads = tmp_path / "tests" / "engine" / "test_threads_x.py"
    other = tmp_path / "tests" / "engine" / "test_other.py"
    conftest = tmp_path / "tests" / "conftest.py"
    for f in (threads, other, conftest):
        f.write_text("a = 1\n")
    src = "src/brisk/engine/threads.py"
    first = scope.tests_hash(src, tmp_path)
    other.write_text("a = 2\n")
    assert scope.tests_hash(src, tmp_path) == first  # not one of threads' test files
    threads.write_text("a = 2\n")
    second = scope.tests_hash(src, tmp_path)
    assert second != first
    conftest.write_text("a = 2\n")
    assert scope.tests_hash(src, tmp_path) != second  # fixtures reach every test
    # a module outside SCOPE is judged by every test file
    before = scope.tests_hash("src/brisk/unscoped.py", tmp_path)
    other.write_text("a = 3\n")
    assert scope.tests_hash("src/brisk/unscoped.py", tmp_path) != before


def test_timeouts_are_reset_only_when_asked(tmp_path):
    meta = tmp_path / "mutants" / "src" / "brisk" / "losses.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": {"m_1": -24, "m_2": 36, "m_3": 1}}))
    (tmp_path / "mutants" / "tests-hash.json").write_text(json.dumps({"src/brisk/losses.py": "h"}))
    same = {"src/brisk/losses.py": "h"}.__getitem__
    assert retest.reset_live(tmp_path / "mutants", tests_hash=same) == ({}, 0)
    counts, kept = retest.reset_live(tmp_path / "mutants", tests_hash=same, timeouts=True)
    assert counts == {str(meta): 2} and kept == 0
    assert json.loads(meta.read_text())["exit_code_by_key"] == {"m_1": None, "m_2": None, "m_3": 1}
