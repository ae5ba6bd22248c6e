"""Hostile files: every attack class of tests/hostile/make_hostile.py, refused with its documented rule.

    python -m benchmarks hostile

Builds one file per class (``make_hostile.build_all``), gives each to the operation its class names
(``verify`` or ``load``, with the class's tightened limits), and records per class: the error type
and rule id raised, whether they are the documented ones, the seconds taken and whether the file
was left unchanged. The same checks run in ``tests/test_hostile.py`` on every CI run; this record
is what the README's count of refused classes cites.
"""

from __future__ import annotations

import hashlib
import sys
import time

from benchmarks.common import latest_ok


SETTINGS = {}
SEEDS = [0]


def run(ctx):
    from benchmarks.runner import ROOT
    sys.path.insert(0, str(ROOT / "tests" / "hostile"))
    from make_hostile import CASES, build_all

    import sparsecomp
    from sparsecomp import SparseCompError
    paths = build_all(ctx.work / "hostile")
    rows = []
    for name, _builder, op, exc, rule, limits in CASES:
        path = paths[name]
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        lim = sparsecomp.Limits(**limits) if limits else None
        t = time.perf_counter()
        got_type = got_rule = None
        try:
            (sparsecomp.verify if op == "verify" else sparsecomp.load)(path, limits=lim)
        except SparseCompError as e:
            got_type, got_rule = type(e).__name__, e.rule
        except Exception as e:                              # noqa: BLE001 - a leak is what we record
            got_type = f"LEAKED {type(e).__name__}"
        rows.append({"class": name, "op": op, "expected": [exc.__name__, rule], "got": [got_type, got_rule],
                     "ok": got_type == exc.__name__ and got_rule == rule,
                     "seconds": round(time.perf_counter() - t, 4),
                     "unchanged": hashlib.sha256(path.read_bytes()).hexdigest() == before})
    bad = [r["class"] for r in rows if not (r["ok"] and r["unchanged"])]
    ctx.log(f"{len(rows)} classes, {len(rows) - len(bad)} refused as documented" + (f"; NOT: {bad}" if bad else ""))
    return {"classes": len(rows), "refused_as_documented": len(rows) - len(bad), "failed": bad,
            "max_seconds": max(r["seconds"] for r in rows), "rows": rows}


def headline(e):
    r = e["results"]
    return f"{r['refused_as_documented']} of {r['classes']} classes refused with their documented rule"


def report(entries):
    from benchmarks.render import run_ref
    e = latest_ok(entries, reporting=False)
    if e is None:
        return "No run yet."
    r = e["results"]
    rules = sorted({row["expected"][1] for row in r["rows"]})
    return "\n".join([
        f"{run_ref('hostile', entries, e)}, {e['started'][:16]}: **{r['refused_as_documented']} of {r['classes']}** "
        f"hostile classes refused with their documented error type and rule id, each file left unchanged, "
        f"slowest refusal {r['max_seconds']:.3f} s" + (f"; failed: {', '.join(r['failed'])}" if r["failed"] else "")
        + ".", "", f"{len(rules)} distinct rule ids: " + ", ".join(f"`{x}`" for x in rules) + "."])


def glance(entries):
    from benchmarks.render import run_ref
    e = latest_ok(entries, reporting=False)
    if e is None:
        return []
    r = e["results"]
    fuzz = _fuzz_summary()
    return [("hostile input", f"{r['refused_as_documented']} classes of hostile files refused, each with its rule "
             f"({run_ref('hostile', entries, e)}){fuzz}")]


def _fuzz_summary() -> str:
    from benchmarks.render import entries_of
    runs = [e for e in entries_of("fuzz") if e.get("status") == "ok"]
    latest = {}
    for e in runs:
        latest[e["results"]["mode"]] = e["results"]
    if not latest:
        return ""
    bad = sum(v.get("crashes", 0) + v.get("hangs", 0) + v.get("silent_corruptions", 0)
              + len(v.get("leaked_exception_types", [])) for v in latest.values())
    total = sum(v["inputs"] for v in latest.values())
    return (f"; fuzzing, latest run per mode ({len(latest)} modes, {total:,} inputs, `results/fuzz.json`): "
            f"{bad} crashes, hangs, leaked exceptions or silent corruptions")
