"""Mark mutmut's live mutants (survived, no tests) as not yet tested, so the next
``mutmut run`` tests them again -- `make mutate`'s incremental step.

mutmut 3 keeps each mutant's verdict in ``mutants/<source>.meta`` and, on the next
``mutmut run``, re-tests only the mutants of functions whose code changed (it compares a
hash per function) and runs the test-to-function mapping again for new tests. A survivor of
an unchanged function would then stay a survivor even when a new test now kills it: this
script resets those verdicts (``exit_code_by_key``: the survivors' ``0`` and "no tests"'
``33`` and ``5`` become ``null``; 5 is pytest's "no tests collected", what a mutant
gets when scope.py deselects every test that calls its function), leaving killed and timed-out mutants cached.

    python tools/mutation/retest.py             # from the repository root, before mutmut run
    python tools/mutation/retest.py --dry-run   # only count them

Prints how many verdicts it reset, per source file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# mutmut.stats.status_by_exit_code: 0 'survived', 33 and 5 'no tests'
LIVE = (0, 33, 5)


def reset_live(mutants: Path = Path("mutants"), dry_run: bool = False) -> dict[str, int]:
    """{source .meta path: number of live verdicts reset} (files with none are left out)."""
    counts = {}
    for meta in sorted(mutants.rglob("*.meta")):
        data = json.loads(meta.read_text())
        codes = data.get("exit_code_by_key", {})
        live = [k for k, code in codes.items() if code in LIVE]
        if not live:
            continue
        counts[str(meta)] = len(live)
        if not dry_run:
            for k in live:
                codes[k] = None
            meta.write_text(json.dumps(data, indent=4))
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", default="mutants", help="mutmut's folder (default: mutants)")
    ap.add_argument("--dry-run", action="store_true", help="count, change nothing")
    args = ap.parse_args(argv)
    if not Path(args.mutants).is_dir():
        print(f"{args.mutants}: no previous run; `mutmut run` starts from scratch")
        return 0
    counts = reset_live(Path(args.mutants), args.dry_run)
    for meta, n in counts.items():
        print(f"{n:5d}  {meta}")
    verb = "would reset" if args.dry_run else "reset"
    print(f"{verb} {sum(counts.values())} live mutant(s) in {len(counts)} file(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
