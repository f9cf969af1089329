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
    codes = {"m_1": 0, "m_2": 1, "m_3": 33, "m_4": None, "m_5": 36, "m_6": -24}
    meta.write_text(json.dumps({"exit_code_by_key": codes, "hash_by_function_name": {"f": "ab"}}))
    clean = tmp_path / "mutants" / "src" / "brisk" / "metrics.py.meta"
    clean.write_text(json.dumps({"exit_code_by_key": {"k_1": 1}}))
    before = clean.read_text()

    assert retest.main(["--mutants", str(tmp_path / "mutants"), "--dry-run"]) == 0
    assert "would reset 2 live mutant(s) in 1 file(s)" in capsys.readouterr().out
    assert json.loads(meta.read_text())["exit_code_by_key"] == codes  # dry run: untouched

    assert retest.main(["--mutants", str(tmp_path / "mutants")]) == 0
    assert "reset 2 live mutant(s) in 1 file(s)" in capsys.readouterr().out
    data = json.loads(meta.read_text())
    assert data["exit_code_by_key"] == {"m_1": None, "m_2": 1, "m_3": None, "m_4": None,
                                        "m_5": 36, "m_6": -24}
    assert data["hash_by_function_name"] == {"f": "ab"}  # mutmut's other state kept
    assert clean.read_text() == before  # nothing live: the file is not rewritten


def test_no_previous_run(tmp_path, capsys):
    assert retest.main(["--mutants", str(tmp_path / "none")]) == 0
    assert "no previous run" in capsys.readouterr().out
