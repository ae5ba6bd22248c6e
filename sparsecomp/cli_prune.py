"""``sparsecomp prune`` and ``sparsecomp compress``: argument parsing and printing only."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .errors import BadArgumentError

__all__ = ["add_prune_commands"]


def _load_any(path: str):
    from .model_io import load
    p = Path(path)
    if p.name.endswith(".sparse.h5"):
        return load(p)
    import keras
    if not p.exists():
        raise BadArgumentError(f"no such file: {path}", rule="argument.input")
    try:
        return keras.saving.load_model(p, safe_mode=True)
    except Exception as exc:  # Keras raises many types for files it cannot read
        raise BadArgumentError(f"Keras could not load {path}: {exc}", rule="argument.input") from None


def _data(args, model):
    if args.data != "mnist":
        raise BadArgumentError(f"--data supports 'mnist' (the built-in offline copy). Received: {args.data!r}",
                               rule="argument.data")
    from .compress import mnist_for
    return mnist_for(model, args.mnist_dir)


def _groups(spec):
    if not spec:
        return "auto"
    return [g.split(",") for g in spec]


class _StepPrinter:
    """One line per pruning step: elapsed time, a bar of the overall sparsity, group, q, val metric."""

    def __init__(self, stream=None):
        self.t0 = time.time()
        self.n = 0
        self.stream = stream or sys.stderr
        self.groups: list[str] = []

    def __call__(self, s):
        self.n += 1
        if s.group not in self.groups:
            self.groups.append(s.group)
        bar = "#" * int(round(s.total_sparsity * 20))
        mark = "accepted" if s.accepted else "REVERTED"
        self.stream.write(f"[{time.time() - self.t0:7.1f}s] step {self.n:3d} group {s.group:<6} q={s.q:<5.2f} "
                          f"sparsity [{bar:<20}] {s.total_sparsity:7.2%}  val {s.val_metric:.4f} "
                          f"(drop {s.drop:+.4f}, {s.epochs} ep)  {mark}\n")
        self.stream.flush()


def _prune_kwargs(args):
    kw = dict(groups=_groups(args.groups), q0=args.q0, step=args.step, max_q=args.max_q, min_step=args.min_step,
              max_drop=args.max_drop, target_sparsity=args.target_sparsity,
              epochs=args.epochs, recovery_epochs=args.recovery_epochs, batch_size=args.batch_size, learning_rate=args.lr, one_shot=args.one_shot,
              validation_split=args.validation_split)
    if args.q is not None:
        kw["q"] = args.q
    return kw


def _cmd_prune(args) -> int:
    from .pruning import prune
    model = _load_any(args.input)
    (x, y), _test = _data(args, model)
    pruned, history = prune(model, (x, y), progress=_StepPrinter(), **_prune_kwargs(args))
    pruned.save(args.output)
    if args.history:
        Path(args.history).write_text(history.to_json())
    print(f"pruned: validation {history.metric} {history.baseline:.4f} -> {history.final_metric:.4f}; "
          f"kernel sparsity " + ", ".join(f"{k} {v:.2%}" for k, v in history.final_sparsity.items()))
    print(f"wrote {args.output}")
    return 0


def _cmd_compress(args) -> int:
    from .compress import compress
    model = _load_any(args.input)
    train, test = _data(args, model)
    report_dir = args.report_dir or str(Path(args.output).with_suffix("").with_suffix("")) + "_report"
    res = compress(model, train, args.output, test_data=test, report_dir=report_dir, min_ratio=args.min_ratio,
                   progress=_StepPrinter(), **_prune_kwargs(args))
    print(res.storage.format_table())
    print()
    for plan in res.plans:
        print(plan)
    print()
    w = max(len(k) for k in res.summary)
    for k, v in res.summary.items():
        print(f"{k:<{w}}  {v}")
    print(f"\nreport: {res.report_html}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": res.summary, "layers": res.layers,
                                               "history": res.history.to_dict()}, indent=2, default=str))
    return 0


def _common(p, progress_flag):
    p.add_argument("input", help="a .keras or .sparse.h5 model")
    p.add_argument("--data", default="mnist", help="training data: 'mnist' (built-in, offline)")
    p.add_argument("--mnist-dir", default=None, help="read MNIST's idx files from here instead")
    p.add_argument("--groups", nargs="*", default=None,
                   help="groups pruned in order, each comma-separated layer names (default: conv, then fc)")
    p.add_argument("--q0", type=float, default=0.5)
    p.add_argument("--step", type=float, default=0.1)
    p.add_argument("--max-q", type=float, default=6.0)
    p.add_argument("--min-step", type=float, default=None,
                   help="after a reverted step, retry with half the step until it is below this (default: stop)")
    p.add_argument("--max-drop", type=float, default=0.002, help="allowed fall of validation accuracy (0.002 = 0.2 points)")
    p.add_argument("--target-sparsity", type=float, default=None,
                   help="stop once this fraction of all kernel weights is zero (default: as far as accuracy allows)")
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs after each step")
    p.add_argument("--recovery-epochs", type=int, default=2,
                   help="extra epochs a step may use to recover before it is reverted")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default: the model's)")
    p.add_argument("--validation-split", type=float, default=1 / 12, help="held out of the training data (default 5000 of 60000)")
    p.add_argument("--one-shot", action="store_true", help="prune once at --q (default --q0), no fine-tuning")
    p.add_argument("--q", type=float, default=None)
    progress_flag(p)


def add_prune_commands(sub, progress_flag) -> None:
    p = sub.add_parser("prune", help="iterative std-threshold pruning over frozen layer groups")
    _common(p, progress_flag)
    p.add_argument("-o", "--output", required=True, help="the pruned model (.keras)")
    p.add_argument("--history", default=None, help="also write the pruning history as JSON")
    p.set_defaults(func=_cmd_prune)

    p = sub.add_parser("compress", help="prune, remove dead units, pack, and report (with plots)")
    _common(p, progress_flag)
    p.add_argument("-o", "--output", required=True, help="the .sparse.h5 file")
    p.add_argument("--min-ratio", type=float, default=1.0)
    p.add_argument("--report-dir", default=None, help="plots + report.html (default: OUTPUT_report/)")
    p.add_argument("--json", default=None, help="also write summary, per-layer table and history as JSON")
    p.set_defaults(func=_cmd_compress)
