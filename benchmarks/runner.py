"""The one way to run a benchmark: ``python -m benchmarks NAME [options]``.

Every run — finished, failed or interrupted — is appended to ``benchmarks/results/NAME.json``
(nothing is ever rewritten or removed) with what a reviewer needs to trust or redo it: the git
commit and whether the tree had uncommitted changes, the full command, the settings (the script's
own, fixed in the file, and any command-line overrides, listed apart), seeds, start and end, the
machine, library versions, and every raw measurement the script returned.

The protocol is enforced here, not left to discipline:

- a *reporting* run refuses to start while ``sparsecomp/``, ``benchmarks/`` (except ``results/``)
  or ``models/`` have uncommitted changes: its settings must be committed before the run that
  reports them, so every reported figure comes from a commit;
- ``--exploratory`` runs are allowed on a dirty tree, are labelled as such, and can never read a
  test set (:meth:`Context.test_split` refuses): they are for choosing settings on validation data;
- a benchmark module declares its ``SETTINGS``; overriding one from the command line makes it
  a different run, recorded as an override.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: where runs are recorded; another checkout (a clean worktree running benchmarks while the main one
#: is being edited) may record into the main one's folder
RESULTS = Path(os.environ.get("SPARSECOMP_RESULTS_DIR", HERE / "results"))
GUARDED = ("sparsecomp", "benchmarks", "models", "setup.py")

__all__ = ["Context", "ProtocolError", "main", "benchmarks", "load_entries", "git_state"]


class ProtocolError(RuntimeError):
    """A run that would break the protocol (dirty tree, test data in an exploratory run...)."""


_DEFINES_RUN = re.compile(r"^(def run\(|run\b[\w, ]*=)", re.M)


def benchmarks() -> dict:
    """``{name: module}`` of every benchmark (modules of this package that define ``run``)."""
    out = {}
    for p in sorted(HERE.glob("*.py")):
        if p.stem.startswith("_") or p.stem in ("runner", "render") or not _DEFINES_RUN.search(p.read_text()):
            continue
        mod = importlib.import_module(f"benchmarks.{p.stem}")
        if hasattr(mod, "run"):
            out[p.stem] = mod
    return out


def git_state() -> dict:
    def git(*args):
        r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain") or ""
    dirty = [line[3:] for line in status.splitlines() if line.strip()]
    return {"commit": commit, "dirty": dirty}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        mem = None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {"cpu": cpu, "cores": cores, "memory_bytes": mem, "platform": platform.platform(),
            "python": platform.python_version(), "hostname_hash": hash(platform.node()) & 0xFFFF}


def versions() -> dict:
    out = {}
    for pkg in ("numpy", "scipy", "h5py", "tensorflow", "keras", "sparsecomp", "tf-keras", "atheris"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def load_entries(name: str) -> list:
    """Every recorded run of benchmark ``name`` (oldest first); a legacy single object becomes a list."""
    p = RESULTS / f"{name}.json"
    if not p.exists():
        return []
    data = json.loads(p.read_text())
    return data if isinstance(data, list) else [data]


def _append(name: str, entry: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    p = RESULTS / f"{name}.json"
    entries = load_entries(name) if p.exists() else []
    entries.append(entry)
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(entries, indent=1, default=_jsonable) + "\n")
    os.replace(tmp, p)
    return p


def _jsonable(o):
    import numpy as np
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


class Context:
    """What a benchmark's ``run`` gets: settings, seeds, a work folder, logging, and the gate to
    the test split."""

    def __init__(self, name: str, settings: dict, seeds: list, exploratory: bool, work: Path, args):
        self.name = name
        self.settings = settings
        self.seeds = seeds
        self.exploratory = exploratory
        self.work = work
        self.args = args
        self.t0 = time.time()
        self.test_reads = 0
        #: what a script has measured so far (e.g. each finished seed): kept when the run fails or is stopped
        self.partial: list = []

    def log(self, msg: str) -> None:
        sys.stderr.write(f"[{time.time() - self.t0:7.1f}s] {msg}\n")
        sys.stderr.flush()

    def test_split(self, loader):
        """Call ``loader()`` for the test split — only in a reporting run, and counted (the
        protocol reads the test set once per final model; scripts record ``test_reads``)."""
        if self.exploratory:
            raise ProtocolError("an exploratory run never reads the test set; choose settings on validation data")
        self.test_reads += 1
        return loader()


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "render":
        from .render import main as render_main
        return render_main(argv[1:])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # the benchmark's own child processes import this checkout's code, whatever is installed
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    mods = benchmarks()
    if not argv or argv[0] in ("-h", "--help", "list"):
        print("usage: python -m benchmarks NAME [--exploratory] [--label L] [--seeds S ...] [--set KEY=VALUE ...] "
              "[script options]\n       python -m benchmarks render [--check]\n\nbenchmarks:")
        for name, mod in mods.items():
            print(f"  {name:<22} {(mod.__doc__ or '').strip().splitlines()[0]}")
        return 0
    name = argv.pop(0)
    if name not in mods:
        print(f"unknown benchmark {name!r}; one of {sorted(mods)}", file=sys.stderr)
        return 2
    mod = mods[name]
    p = argparse.ArgumentParser(prog=f"python -m benchmarks {name}", description=mod.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exploratory", action="store_true",
                   help="allowed on an uncommitted tree; labelled; never reads the test set")
    p.add_argument("--label", default=None, help="a short note stored with the run")
    p.add_argument("--seeds", type=int, nargs="*", default=None, help="default: the script's SEEDS")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting (JSON value); recorded as an override")
    p.add_argument("--work", default=None, help="keep the run's files here (default: a temporary folder)")
    if hasattr(mod, "add_arguments"):
        mod.add_arguments(p)
    args = p.parse_args(argv)
    settings = json.loads(json.dumps(getattr(mod, "SETTINGS", {})))
    overrides = {}
    for kv in args.set:
        key, _, value = kv.partition("=")
        if key not in settings:
            p.error(f"unknown setting {key!r}; settings: {sorted(settings)}")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    settings.update(overrides)
    seeds = args.seeds if args.seeds is not None else list(getattr(mod, "SEEDS", [0]))
    git = git_state()
    guarded = [f for f in git["dirty"] if f.startswith(GUARDED) and not f.startswith("benchmarks/results/")]
    if guarded and not args.exploratory:
        print("error: uncommitted changes in " + ", ".join(guarded[:8]) + (" ..." if len(guarded) > 8 else "") +
              "\nA reported run's settings and code must be committed first (or pass --exploratory).", file=sys.stderr)
        return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(name, settings, seeds, args.exploratory, work, args)
    entry = {"benchmark": name, "label": args.label, "status": "running", "exploratory": args.exploratory,
             "commit": git["commit"], "dirty": git["dirty"],
             "command": "python -m benchmarks " + " ".join(shlex.quote(a) for a in [name, *argv]),
             "settings": settings, "overrides": overrides, "seeds": seeds,
             "arguments": {k: v for k, v in vars(args).items()
                           if k not in ("exploratory", "label", "seeds", "set", "work")},
             "started": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
             "versions": versions()}
    t0 = time.time()
    code = 0

    def stop(signum, frame):                      # SIGTERM, and SIGINT even where a shell ignored it
        raise KeyboardInterrupt
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    try:
        results = mod.run(ctx)
        entry["status"] = "ok"
    except KeyboardInterrupt:
        results, entry["status"], code = None, "interrupted", 130
        entry["error"] = "interrupted (SIGINT or SIGTERM)"
    except Exception as exc:  # a failed run is recorded too, then reported
        results, entry["status"], code = None, "failed", 1
        entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["traceback"] = traceback.format_exc()[-4000:]
    entry["results"] = results
    if results is None and ctx.partial:
        entry["partial"] = ctx.partial
    entry["test_reads"] = ctx.test_reads
    entry["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    entry["seconds"] = round(time.time() - t0, 1)
    path = _append(name, entry)
    print(f"{entry['status']}: run {len(load_entries(name))} of {name} recorded in {path}", file=sys.stderr)
    if code == 1:
        print(entry["traceback"], file=sys.stderr)
    return code
