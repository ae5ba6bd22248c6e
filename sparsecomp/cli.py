"""The ``sparsecomp`` command: argument parsing and printing around the public API, nothing more.

Conventions every verb follows:

- **quiet**: nothing but the verb's own output; TensorFlow's and absl's log lines and Python
  warnings only with ``-v``;
- **errors**: one line, ``error: FILE: MEMBER: what is wrong [rule]``, exit 1; an error nobody
  foresaw is one line naming it too (the traceback with ``-v``);
- **outputs**: checked before any work starts (directory exists and is writable, not the input);
  an existing output is replaced only with ``--force``;
- **interruption** (pruning verbs): the first Ctrl-C or SIGTERM abandons the running step, saves
  the last decided state next to the output and says how to continue; a second one exits at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
import warnings
from pathlib import Path

from .errors import SparseCompError
from .outputs import check_outputs

__all__ = ["main", "Progress", "quiet_imports"]


class Progress:
    """A one-line progress bar on stderr (silent when stderr is not a terminal unless forced)."""

    def __init__(self, label: str, *, enabled: bool | None = None, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.t0 = time.time()
        self.last = 0.0

    def __call__(self, done: int, total: int, what: str = "") -> None:
        if not self.enabled:
            return
        now = time.time()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        frac = done / total if total else 1.0
        bar = "#" * int(frac * 24)
        what = what if len(what) <= 40 else "…" + what[-39:]
        self.stream.write(f"\r{self.label} [{bar:<24}] {done}/{total} {now - self.t0:5.1f}s {what:<40}")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


@contextlib.contextmanager
def quiet_imports(verbose: bool):
    """Import TensorFlow and Keras with the process's stderr closed (their C++ and absl code
    print before any log level is read), and keep their Python loggers and warnings quiet."""
    if verbose:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras  # noqa: F401
        import tensorflow as tf
        tf.get_logger().setLevel("ERROR")
        try:
            import absl.logging
            absl.logging.set_verbosity(absl.logging.ERROR)
        except ImportError:
            pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    yield


def _default_unpacked_name(src: Path, source_name: str | None, kind: str) -> Path:
    if kind == "model":
        return src.with_name(src.name.removesuffix(".sparse.h5") + ".keras")
    if source_name:
        return src.with_name(Path(source_name).name)
    return src.with_name(src.name.removesuffix(".sparse.h5") + (".keras" if kind == "keras" else ".h5"))


def _cmd_pack(args) -> int:
    from .storage import pack
    check_outputs([("the output", args.output, False)], force=args.force, inputs=[args.input])
    report = pack(args.input, args.output, min_ratio=args.min_ratio, drop_optimizer=args.drop_optimizer,
                  level=args.level, progress=Progress("pack", enabled=args.progress))
    print(report.to_json() if args.json else report.format_table())
    return 0


def _cmd_unpack(args) -> int:
    from .model_io import unpack
    from .storage import Reader
    src = Path(args.input)
    with Reader(src) as r:
        source_name, kind = r.meta["source_name"] or "", r.kind
    out = Path(args.output) if args.output else _default_unpacked_name(src, source_name, kind)
    check_outputs([("the output", out, False)], force=args.force, inputs=[src])
    unpack(src, out, progress=Progress("unpack", enabled=args.progress))
    print(f"wrote {out}")
    return 0


def _cmd_inspect(args) -> int:
    from .model_io import inspect, keras_baseline_bytes
    if args.in_process:
        report = inspect(args.file, baseline=not args.no_baseline, progress=Progress("inspect", enabled=args.progress))
    else:
        # parse in an isolated child first; only a file that passed is opened here for the baseline
        report = inspect(args.file, isolate=True)
        if not args.no_baseline:
            report.keras_bytes = keras_baseline_bytes(args.file)
    print(report.to_json() if args.json else report.format_table())
    return 0


def _cmd_verify(args) -> int:
    from .model_io import verify
    report = verify(args.file, isolate=not args.in_process, progress=Progress("verify", enabled=args.progress))
    t = report.totals()
    print(f"OK: {args.file}: {t['tensors']} tensors, {t['params']:,} parameters, every codec invariant "
          "and SHA-256 checksum verified")
    return 0


def _progress_flag(p):
    p.add_argument("--progress", action="store_true", default=None,
                   help="show a progress bar even when stderr is not a terminal")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show TensorFlow's log lines, warnings and the traceback of an unexpected error")


def build_parser() -> argparse.ArgumentParser:
    from .cli_prune import add_prune_commands
    from .version import __version__
    p = argparse.ArgumentParser(prog="sparsecomp",
                                description="Make trained Keras models smaller on disk, and prove it.")
    p.add_argument("--version", action="version", version=f"sparsecomp {__version__}")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show TensorFlow's log lines, warnings and the traceback of an unexpected error")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("pack", help="checkpoint (.h5, .weights.h5, .keras) -> .sparse.h5")
    s.add_argument("input")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--min-ratio", type=float, default=1.0,
                   help="use a codec other than dense only where it is at least R times smaller (default 1: "
                        "whenever smaller)")
    s.add_argument("--drop-optimizer", action="store_true", help="leave optimizer state out")
    s.add_argument("--level", type=int, choices=[1, 2, 3], default=2,
                   help="storage effort: 1 fast (values stored raw), 2 default, 3 smallest")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.add_argument("--force", action="store_true", help="replace an existing output file")
    _progress_flag(s)
    s.set_defaults(func=_cmd_pack, needs_keras=False)

    s = sub.add_parser("unpack", help=".sparse.h5 -> the original checkpoint kind")
    s.add_argument("input")
    s.add_argument("-o", "--output", default=None, help="default: the source's file name, beside INPUT")
    s.add_argument("--force", action="store_true", help="replace an existing output file")
    _progress_flag(s)
    s.set_defaults(func=_cmd_unpack, needs_keras=True)

    s = sub.add_parser("inspect", help="per-tensor storage report of a .sparse.h5 file")
    s.add_argument("file")
    s.add_argument("--json", action="store_true")
    s.add_argument("--no-baseline", action="store_true",
                   help="skip measuring the size of Keras' own dense file of the same model")
    s.add_argument("--in-process", action="store_true",
                   help="parse in this process (default: first in a child process with memory and time "
                        "limits, which a hostile file cannot crash or hang)")
    _progress_flag(s)
    s.set_defaults(func=_cmd_inspect, needs_keras=True)

    s = sub.add_parser("verify", help="full validation: structure, codec invariants, checksums")
    s.add_argument("file")
    s.add_argument("--in-process", action="store_true",
                   help="parse in this process (default: an isolated child process with memory and time limits)")
    _progress_flag(s)
    s.set_defaults(func=_cmd_verify, needs_keras=False)

    add_prune_commands(sub, _progress_flag)
    return p


class _Signals:
    """First SIGINT/SIGTERM: KeyboardInterrupt where the program is (the library saves what it
    has); a second one while that happens: exit at once, writing nothing more."""

    def __init__(self):
        self.count = 0

    def __call__(self, signum, frame):
        self.count += 1
        if self.count > 1:
            os.write(2, b"\ninterrupted again: exiting without saving\n")
            os._exit(130)
            return
        raise KeyboardInterrupt

    def install(self):
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = args.verbose
    if not verbose:
        warnings.simplefilter("ignore")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    previous = None
    if getattr(args, "interruptible", False) and __import__("threading").current_thread() is \
            __import__("threading").main_thread():
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        _Signals().install()
    try:
        needs = getattr(args, "needs_keras", True)
        if needs(args) if callable(needs) else needs:
            with quiet_imports(verbose):
                pass
        return int(args.func(args) or 0)
    except SparseCompError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        saved = getattr(exc, "saved", None)
        if not getattr(args, "interruptible", False):
            print("interrupted", file=sys.stderr)
        elif saved is not None:
            print(f"interrupted after {exc.steps} decided steps: the last decided state is saved in {saved}; "
                  f"continue with the same command plus --checkpoint-dir {saved} --resume", file=sys.stderr)
        else:
            print("interrupted (nothing was saved: no step had been decided yet)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 — the CLI reports what nobody foresaw in one line
        if verbose:
            import traceback
            traceback.print_exc()
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        what = lines[0][:300] if lines else ""
        print(f"error: unexpected {type(exc).__name__}: {what}" + ("" if verbose else
              " (run with -v for the traceback; please report it)"), file=sys.stderr)
        return 1
    finally:                                  # called in-process (tests, notebooks): leave the handlers as found
        for sig, handler in (previous or {}).items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    raise SystemExit(main())
