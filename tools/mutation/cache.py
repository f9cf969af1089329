"""mutmut's verdicts kept in the repository, so `make mutate` is incremental on any checkout.

mutmut 3 stores, per source file, each mutant's verdict and a hash of each function in
``mutants/<source>.meta``, and when it regenerates a file's mutants it keeps the verdicts of
the functions whose hash did not change. ``mutants/`` is git-ignored (46 MB of mutated
copies); this script copies the part that matters, the verdicts and the hashes (~0.5 MB of
JSON), to and from ``tools/mutation/cache/``:

    python tools/mutation/cache.py restore   # before mutmut run: cache -> mutants/ (files
                                             # that mutants/ has no .meta for)
    python tools/mutation/cache.py save      # after it: mutants/ -> cache

A fresh checkout then re-tests only what changed since the cached run (and the live
mutants: ``retest.py``), and a run stopped part-way leaves its verdicts for the next one.
Timings are not kept (mutmut measures them again). ``save`` also records, per source file,
the hash of the tests that judged it (``scope.tests_hash``) in ``tests-hash.json``, so that
``retest.py`` re-tests the survivors of a module only when its tests changed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

CACHE = Path(__file__).resolve().parent / "cache"
KEPT = ("exit_code_by_key", "hash_by_function_name", "type_check_error_by_key")
HASHES = "tests-hash.json"  # {source path: scope.tests_hash}, in mutants/ and the cache


def _scope():
    spec = importlib.util.spec_from_file_location("mutation_scope",
                                                  Path(__file__).resolve().parent / "scope.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def source_of(meta: Path, mutants: Path) -> str:
    """'mutants/src/brisk/losses.py.meta' -> 'src/brisk/losses.py'."""
    return meta.relative_to(mutants).with_suffix("").as_posix()


def save(mutants: Path = Path("mutants"), cache: Path = CACHE) -> int:
    """Write the verdicts and hashes of every ``mutants/**/*.meta``, and the hash of the tests
    that judged each (the checkout's tests now: the run's), to the cache and to
    ``mutants/tests-hash.json``; returns the file count."""
    n = 0
    scope, hashes = _scope(), {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        hashes[source_of(meta, mutants)] = scope.tests_hash(source_of(meta, mutants))
        data = json.loads(meta.read_text())
        out = cache / meta.relative_to(mutants).with_suffix(".json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({k: data.get(k, {}) for k in KEPT}, indent=1, sort_keys=True,
                                  ensure_ascii=False) + "\n")
        n += 1
    text = json.dumps(hashes, indent=1, sort_keys=True) + "\n"
    if hashes:
        (cache / HASHES).write_text(text)
        (mutants / HASHES).write_text(text)
    return n


def restore(mutants: Path = Path("mutants"), cache: Path = CACHE) -> int:
    """Write a mutmut ``.meta`` for every cached file that ``mutants/`` lacks one for, and
    the cached tests' hashes where ``mutants/`` has none."""
    n = 0
    if (cache / HASHES).exists() and not (mutants / HASHES).exists():
        mutants.mkdir(parents=True, exist_ok=True)
        (mutants / HASHES).write_text((cache / HASHES).read_text())
    for js in sorted(cache.rglob("*.py.json")):
        meta = mutants / js.relative_to(cache).with_suffix(".meta")
        if meta.exists():  # a local run's own verdicts win
            continue
        data = json.loads(js.read_text())
        data.update(durations_by_key={}, estimated_durations_by_key={})
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps(data, indent=4))
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("save", "restore"))
    ap.add_argument("--mutants", default="mutants")
    ap.add_argument("--cache", default=str(CACHE))
    args = ap.parse_args(argv)
    fn = save if args.action == "save" else restore
    n = fn(Path(args.mutants), Path(args.cache))
    print(f"{args.action}: {n} file(s) ({args.mutants} {'->' if fn is save else '<-'} {args.cache})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
