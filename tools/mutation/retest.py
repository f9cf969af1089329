"""Mark mutmut's live mutants (survived, no tests) as not yet tested where their tests
changed, so the next ``mutmut run`` tests them again -- `make mutate`'s incremental step.

mutmut 3 keeps each mutant's verdict in ``mutants/<source>.meta`` and, on the next
``mutmut run``, re-tests only the mutants of functions whose code changed (it compares a
hash per function) and runs the test-to-function mapping again for new tests. A survivor of
an unchanged function would then stay a survivor even when a new test now kills it: this
script resets those verdicts (``exit_code_by_key``: the survivors' ``0`` and "no tests"'
``33`` and ``5`` become ``null``; 5 is pytest's "no tests collected", what a mutant gets
when scope.py deselects every test that calls its function), leaving killed and timed-out
mutants cached.

Only where the tests that judge the file changed: ``cache.py save`` records, per source
file, ``scope.tests_hash`` (its SCOPE entry and those test files' text) in
``mutants/tests-hash.json``; a file whose hash is the same keeps its survivors (the same
tests on the same code give the same verdict; re-running ~800 survivors cost over an
hour). ``--all`` resets every live verdict, e.g. after a change to code that a survivor's
function calls (``make mutate-full`` re-tests everything).

    python tools/mutation/retest.py             # from the repository root, before mutmut run
    python tools/mutation/retest.py --dry-run   # only count them
    python tools/mutation/retest.py --all       # whatever the tests' hashes
    python tools/mutation/retest.py --timeouts  # also every timeout, whatever the hashes

Timeouts: mutmut also stops a mutant's tests after a wall-clock time, half its CPU-time
limit ((the tests' time + 1 s) x timeout_multiplier); on a machine busy with other work an
unchanged mutant can pass that and be filed as a timeout (counted as killed). ``--timeouts``
re-tests them on a quiet machine.

Prints how many verdicts it reset, per source file, and how many it kept.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

# mutmut.stats.status_by_exit_code: 0 'survived', 33 and 5 'no tests'
LIVE = (0, 33, 5)
TIMEOUT = (36, 24, -24, 152, 255)  # mutmut's 'timeout' codes (SIGXCPU, its own 36)
HASHES = "tests-hash.json"  # written by cache.py save


def _tests_hash(source: str) -> str:
    spec = importlib.util.spec_from_file_location("mutation_scope",
                                                  Path(__file__).resolve().parent / "scope.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.tests_hash(source)


def reset_live(mutants: Path = Path("mutants"), dry_run: bool = False, everything: bool = False,
               tests_hash=_tests_hash, timeouts: bool = False) -> tuple[dict[str, int], int]:
    """({source .meta path: number of live verdicts reset}, number kept because the tests of
    their file did not change); files with nothing reset are left out. ``timeouts``: every
    timeout verdict is reset too."""
    recorded = {}
    if not everything and (mutants / HASHES).exists():
        recorded = json.loads((mutants / HASHES).read_text())
    counts, kept = {}, 0
    for meta in sorted(mutants.rglob("*.meta")):
        data = json.loads(meta.read_text())
        codes = data.get("exit_code_by_key", {})
        live = [k for k, code in codes.items() if code in LIVE]
        timed_out = [k for k, code in codes.items() if timeouts and code in TIMEOUT]
        if not live and not timed_out:
            continue
        source = meta.relative_to(mutants).with_suffix("").as_posix()
        if live and source in recorded and recorded[source] == tests_hash(source):
            kept += len(live)
            live = []
        live += timed_out
        if not live:
            continue
        counts[str(meta)] = len(live)
        if not dry_run:
            for k in live:
                codes[k] = None
            meta.write_text(json.dumps(data, indent=4))
    return counts, kept


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", default="mutants", help="mutmut's folder (default: mutants)")
    ap.add_argument("--dry-run", action="store_true", help="count, change nothing")
    ap.add_argument("--all", action="store_true",
                    help="reset every live verdict, whether or not its tests changed")
    ap.add_argument("--timeouts", action="store_true", help="also reset every timeout")
    args = ap.parse_args(argv)
    if not Path(args.mutants).is_dir():
        print(f"{args.mutants}: no previous run; `mutmut run` starts from scratch")
        return 0
    counts, kept = reset_live(Path(args.mutants), args.dry_run, args.all,
                              timeouts=args.timeouts)
    for meta, n in counts.items():
        print(f"{n:5d}  {meta}")
    verb = "would reset" if args.dry_run else "reset"
    print(f"{verb} {sum(counts.values())} mutant(s) in {len(counts)} file(s); "
          f"kept {kept} whose tests did not change")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
