"""Mutation score per module from mutmut's results in mutants/ (run from the repo root).

    python tools/mutation/score.py                     # table per module and overall
    python tools/mutation/score.py --survivors FILE    # also list every live mutant in FILE

Score = (killed + timeout + documented equivalent) / (all mutants - skipped - pending). Mutants with
no covering test ("no tests") count against it, like survivors. Equivalent mutants (ones
that cannot change behaviour) are listed by name, one a line with a `# reason`, in
tools/mutation/equivalent*.txt.

mutmut numbers a function's mutants in order, so an edit to a function (or a moved module)
renames them. A name in the lists therefore counts only through its recorded identity,
``equivalent-keys.json``: the function and the exact change (``- old / + new``). A survivor
of a later run is equivalent when its function and change match a recorded one, whatever
its number; a listed mutant whose change no longer exists is reported as stale.

    python tools/mutation/score.py --record-equivalents   # after editing the lists, on the
                                                          # run whose names they use
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections import Counter
from pathlib import Path

from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.format_utils import orig_function_and_class_names_from_key

HERE = Path(__file__).resolve().parent
COLUMNS = ["killed", "timeout", "equivalent", "survived", "no tests", "skipped", "pending", "other"]


KEYS = HERE / "equivalent-keys.json"


def listed_equivalents() -> set[str]:
    names = set()
    for eq_file in sorted(HERE.glob("equivalent*.txt")):  # one file per area
        for line in eq_file.read_text().splitlines():
            name = line.split("#", 1)[0].strip()
            if name:
                names.add(name)
    return names


def mutant_key(src: str, name: str) -> str:
    """The identity of a mutant that survives renumbering: its function and its change."""
    func = name.rsplit(".", 1)[1].rsplit("__mutmut_", 1)[0]
    return f"{func}\n{describe(src, name)[1]}"


def load_results(keys: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """{source path: {mutant name: status}} for every file that has mutants; a survivor
    whose key is in ``keys`` (recorded equivalents) is 'equivalent'."""
    equivalent_keys = set((keys or {}).values())
    out = {}
    for meta in sorted(Path("mutants/src").rglob("*.py.meta")):
        try:
            codes = json.loads(meta.read_text())["exit_code_by_key"]
        except (ValueError, KeyError) as e:  # a run killed while mutmut wrote this file
            print(f"warning: {meta} is unreadable ({e}); its mutants are not counted",
                  file=sys.stderr)
            continue
        if not codes:
            continue
        src = str(meta.relative_to("mutants"))[: -len(".meta")]
        statuses = {}
        for name, code in codes.items():
            # mutmut files 255 (its runner raised, e.g. a test id it could not find) as a
            # timeout; that is no kill.
            status = "other" if code == 255 else status_by_exit_code[code]
            status = "pending" if status == "not checked" else status
            if status == "survived" and equivalent_keys and mutant_key(src, name) in equivalent_keys:
                status = "equivalent"
            statuses[name] = status if status in COLUMNS else "other"
        out[src] = statuses
    return out


def score(counts: Counter) -> float:
    tested = sum(counts.values()) - counts["skipped"] - counts["pending"]
    good = counts["killed"] + counts["timeout"] + counts["equivalent"]
    return 100.0 * good / tested if tested else 100.0


def function_start(path: str, func: str, cls: str | None) -> int | None:
    """First line (decorators included) of a top-level function or method in the source."""
    tree = ast.parse(Path(path).read_text())
    body = tree.body
    if cls:
        body = next((n.body for n in body if isinstance(n, ast.ClassDef) and n.name == cls), [])
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == func:
            return min([node.lineno] + [d.lineno for d in node.decorator_list])
    return None


def describe(path: str, name: str) -> tuple[int | None, str]:
    """(line in the source file, '- old / + new') for one mutant."""
    diff = get_diff_for_mutant(name, path=path).splitlines()
    func, cls = orig_function_and_class_names_from_key(name)
    start = function_start(path, func, cls)
    line, old, new, pos = None, [], [], None
    for text in diff:
        hunk = re.match(r"@@ -(\d+)", text)
        if hunk:
            pos = int(hunk.group(1)) - 1
        elif text.startswith(("---", "+++")) or pos is None:
            continue
        elif text.startswith("-"):
            old.append(text[1:].strip())
            if line is None and start is not None:
                line = start + pos
            pos += 1
        elif text.startswith("+"):
            new.append(text[1:].strip())
        else:
            pos += 1
    return line, f"- {' | '.join(old)}\n        + {' | '.join(new)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--survivors", type=Path, help="write the live mutants (survived, no tests) here"
    )
    ap.add_argument("--record-equivalents", action="store_true",
                    help="store the identity of every listed equivalent found in mutants/")
    args = ap.parse_args()

    if args.record_equivalents:
        listed, keys = listed_equivalents(), {}
        for meta in sorted(Path("mutants/src").rglob("*.py.meta")):
            src = str(meta.relative_to("mutants"))[: -len(".meta")]
            for name in json.loads(meta.read_text())["exit_code_by_key"]:
                if name in listed:
                    keys[name] = mutant_key(src, name)
        missing = sorted(listed - set(keys))
        KEYS.write_text(json.dumps(keys, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
        print(f"recorded {len(keys)} equivalents in {KEYS}; not in this run: {missing}")
        return

    keys = json.loads(KEYS.read_text()) if KEYS.exists() else {}
    results = load_results(keys)
    if not results:
        raise SystemExit("no results in mutants/: run `make mutate` first")
    found = {mutant_key(src, n) for src, st in results.items() for n, v in st.items()
             if v == "equivalent"}
    stale = sorted(n for n, k in keys.items() if k not in found)
    if stale:
        print(f"{len(stale)} recorded equivalents did not survive in this run (killed now, or "
              f"their code changed): {', '.join(stale)}")
    total = Counter()
    print(f"{'module':26s} {'total':>6s} " + " ".join(f"{c:>9s}" for c in COLUMNS) + "   score")
    for src, statuses in results.items():
        counts = Counter(statuses.values())
        total += counts
        row = " ".join(f"{counts[c]:9d}" for c in COLUMNS)
        print(f"{src[len('src/brisk/') :]:26s} {len(statuses):6d} {row}  {score(counts):5.1f}%")
    row = " ".join(f"{total[c]:9d}" for c in COLUMNS)
    print(f"{'ALL':26s} {sum(total.values()):6d} {row}  {score(total):5.1f}%")

    if args.survivors:
        lines = []
        for src, statuses in results.items():
            for name, status in statuses.items():
                if status in ("survived", "no tests"):
                    line, change = describe(src, name)
                    func, cls = orig_function_and_class_names_from_key(name)
                    where = f"{cls}.{func}" if cls else func
                    lines.append(
                        f"{src}:{line}  {where}  [{status}]  {name.rsplit('.', 1)[1]}\n        {change}"
                    )
        args.survivors.write_text("\n".join(lines) + "\n")
        print(f"{len(lines)} live mutants written to {args.survivors}")


if __name__ == "__main__":
    main()
