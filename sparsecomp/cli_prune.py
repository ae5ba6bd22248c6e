"""``sparsecomp prune`` and ``sparsecomp compress``: argument parsing and printing only.

The choices come from the registries (:data:`sparsecomp.methods.METHODS`,
:data:`sparsecomp.criteria.CRITERIA`); each method's own flags are listed once in
:data:`METHOD_FLAGS`, and a flag of another method is refused by name.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from .criteria import EQUALIZATIONS, NORMALIZERS
from .errors import BadArgumentError
from .methods import METHODS
from .training import GATES

__all__ = ["add_prune_commands", "METHOD_FLAGS"]

#: flag dest -> keyword of the method function, per method.
METHOD_FLAGS = {
    "std": {"groups": "groups", "q0": "q0", "step": "step", "max_q": "max_q", "min_step": "min_step",
            "one_shot": "one_shot", "q": "q", "target_sparsity": "target_sparsity"},
    "correlation": {"q": "q", "p": "p", "record_fraction": "record_fraction", "max_cycles": "max_cycles",
                    "layers": "layers", "target_sparsity": "target_sparsity"},
    "structured": {"criterion": "criterion", "fraction": "fraction", "threshold": "threshold", "scope": "scope",
                   "rounds": "rounds", "equalization": "equalization", "normalizer": "normalizer",
                   "granularity": "granularity", "min_filters": "min_channels", "exclude": "exclude",
                   "fold_bn": "fold_bn"},
}
#: flag dest -> FineTuning field
TUNING_FLAGS = {"epochs": "epochs", "recovery_epochs": "recovery_epochs", "max_drop": "max_drop", "gate": "gate",
                "z": "z", "batch_size": "batch_size", "lr": "learning_rate", "lr_decay": "lr_decay", "l2": "l2",
                "metric": "metric", "validation_split": "validation_split", "max_epochs": "max_epochs",
                "seed": "seed", "expected_baseline": "expected_baseline"}


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
    from .data import mnist_for
    return mnist_for(model, args.mnist_dir)


def _groups(spec):
    if not spec:
        return "auto"
    return [g.split(",") for g in spec]


class _StepPrinter:
    """One line per pruning step (or structured round): elapsed time, sparsity, decision."""

    def __init__(self, stream=None):
        self.t0 = time.time()
        self.n = 0
        self.stream = stream or sys.stderr

    def __call__(self, s):
        self.n += 1
        mark = "accepted" if s.accepted else "REVERTED"
        if hasattr(s, "round"):
            what = f"sparsity {s.sparsity:.2%}" if s.criterion == "magnitude" else f"-{s.channels_removed} channels"
            self.stream.write(f"[{time.time() - self.t0:7.1f}s] round {s.round:2d} {s.criterion:<9} {what:<18} "
                              f"params {s.params:>10,}  val {s.val_metric:.4f} (drop {s.drop:+.4f}, {s.epochs} ep)"
                              f"  {mark}\n")
        else:
            bar = "#" * int(round(s.total_sparsity * 20))
            self.stream.write(f"[{time.time() - self.t0:7.1f}s] step {self.n:3d} {s.group:<6} q={s.q:<5.2f} "
                              f"sparsity [{bar:<20}] {s.total_sparsity:7.2%}  val {s.val_metric:.4f} "
                              f"(drop {s.drop:+.4f}, {s.epochs} ep)  {mark}\n")
        self.stream.flush()


def _strategy(args):
    """The strategy first (MultiWorkerMirroredStrategy must exist before any other TensorFlow work)."""
    if not args.strategy:
        return None
    from .distribute import get_strategy
    return get_strategy(args.strategy)


def _outputs_of(args, strategy, names):
    """Non-chief workers of a multi-worker run write into a temporary folder, never the real paths."""
    from .distribute import is_chief
    if is_chief(strategy):
        return None
    tmp = tempfile.mkdtemp(prefix="sparsecomp-worker-")
    for name in names:
        if getattr(args, name, None):
            setattr(args, name, str(Path(tmp) / Path(getattr(args, name)).name))
    return tmp


def _method_kwargs(args, strategy=None) -> dict:
    """The method's keyword arguments from the flags; a flag of another method is refused."""
    method = args.method
    own = METHOD_FLAGS[method]
    for other, flags in METHOD_FLAGS.items():
        for dest in flags:
            if other != method and dest not in own and getattr(args, dest, None) not in (None, False, [], _UNSET):
                raise BadArgumentError(f"--{dest.replace('_', '-')} belongs to --method {other}; --method {method} "
                                       f"takes {', '.join('--' + d.replace('_', '-') for d in own)}",
                                       rule="argument.method")
    kw = {"strategy": strategy}
    for dest, field in TUNING_FLAGS.items():
        v = getattr(args, dest, None)
        if v is not None:
            kw[field] = v
    if args.no_baseline_check:
        kw["check_baseline"] = False
    for dest, key in own.items():
        v = getattr(args, dest, None)
        if v in (None, _UNSET) or (v is False and dest in ("one_shot", "fold_bn")):
            continue
        if dest == "groups":
            v = _groups(v)
        kw[key] = v
    if method == "structured" and kw.get("threshold") is not None:
        kw["fraction"] = None
    return kw


_UNSET = object()


def _cmd_prune(args) -> int:
    strategy = _strategy(args)
    _outputs_of(args, strategy, ("output", "history"))
    model = _load_any(args.input)
    (x, y), _test = _data(args, model)
    pruned, history = METHODS.get(args.method)(model, (x, y), progress=_StepPrinter(), **_method_kwargs(args, strategy))
    pruned.save(args.output)
    if args.history:
        Path(args.history).write_text(history.to_json())
    if hasattr(history, "rounds"):
        print(f"structured: parameters {history.dense_params:,} -> {history.final_params:,} "
              f"({history.dense_params / max(history.final_params, 1):.2f}x fewer); validation {history.metric} "
              f"{history.baseline:.4f} -> {history.final_metric:.4f}")
        last = [r for r in history.rounds if r.accepted]
        if last:
            print("filters per layer: " + ", ".join(f"{k} {v[0]}/{history.rounds[0].filters[k][1]}"
                                                    for k, v in last[-1].filters.items()))
    else:
        print(f"pruned: validation {history.metric} {history.baseline:.4f} -> {history.final_metric:.4f}; "
              f"kernel sparsity " + ", ".join(f"{k} {v:.2%}" for k, v in history.final_sparsity.items()))
    print(f"wrote {args.output}")
    return 0


def _cmd_compress(args) -> int:
    from .compress import compress
    strategy = _strategy(args)
    report_dir = args.report_dir or str(Path(args.output).with_suffix("").with_suffix("")) + "_report"
    args.report_dir = report_dir
    _outputs_of(args, strategy, ("output", "report_dir", "json"))
    model = _load_any(args.input)
    train, test = _data(args, model)
    res = compress(model, train, args.output, method=args.method, test_data=test, report_dir=args.report_dir,
                   min_ratio=args.min_ratio, level=args.level, progress=_StepPrinter(),
                   **_method_kwargs(args, strategy))
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


def _common(p, progress_flag, *, method_default="std"):
    from .structured import structured_criteria
    p.add_argument("input", help="a .keras or .sparse.h5 model")
    p.add_argument("--method", choices=METHODS.names(), default=method_default,
                   help="; ".join(f"{n}: {METHODS.help(n)}" for n in METHODS.names()))
    p.add_argument("--data", default="mnist", help="training data: 'mnist' (built-in, offline)")
    p.add_argument("--mnist-dir", default=None, help="read MNIST's idx files from here instead")
    g = p.add_argument_group("fine-tuning (every method)")
    g.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs after each step (default 1)")
    g.add_argument("--recovery-epochs", type=int, default=None,
                   help="extra epochs a step may use to recover before it is reverted (default 2; structured 0)")
    g.add_argument("--max-drop", type=float, default=None,
                   help="allowed fall of validation accuracy (default 0.002 = 0.2 points; structured 0.01)")
    g.add_argument("--gate", choices=GATES, default=None,
                   help="fixed: drop <= max-drop; paired: drop + z standard errors <= max-drop")
    g.add_argument("--z", type=float, default=None, help="paired gate: the margin in standard errors (default 1)")
    g.add_argument("--batch-size", type=int, default=None, help="the global batch (default 128)")
    g.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default: the model's)")
    g.add_argument("--lr-decay", type=float, default=None,
                   help="each step restarts at --lr and multiplies it by this after every epoch (default 1: constant)")
    g.add_argument("--l2", type=float, default=None,
                   help="L2 penalty on the kernels while fine-tuning, as Han et al. (default: the model's own)")
    g.add_argument("--metric", default=None, help="the validation metric the gate reads (default accuracy)")
    g.add_argument("--validation-split", type=float, default=1 / 12,
                   help="held out of the training data (default 1/12: 5000 of MNIST's 60000)")
    g.add_argument("--max-epochs", type=int, default=None, help="fine-tuning budget in epochs")
    g.add_argument("--seed", type=int, default=None, help="order of the training data, dropout (default 0)")
    g.add_argument("--no-baseline-check", action="store_true",
                   help="prune even if the dense model scores near chance on the validation data")
    g.add_argument("--expected-baseline", type=float, default=None,
                   help="refuse a dense model more than 2 points below this validation accuracy")
    g = p.add_argument_group("--method std")
    g.add_argument("--groups", nargs="*", default=None,
                   help="groups pruned in order, each comma-separated layer names (default: conv, then fc)")
    g.add_argument("--q0", type=float, default=None, help="first q of every group (default 0.5)")
    g.add_argument("--step", type=float, default=None, help="q rises by this (default 0.1)")
    g.add_argument("--max-q", type=float, default=None, help="(default 6)")
    g.add_argument("--min-step", type=float, default=None,
                   help="after a reverted step, retry with half the step until it is below this (default: stop)")
    g.add_argument("--one-shot", action="store_true", help="prune once at --q (default --q0), no fine-tuning")
    g.add_argument("--q", type=float, default=None,
                   help="std --one-shot: the q to prune at; correlation: the magnitude cut in sigmas (default 1.0)")
    g.add_argument("--target-sparsity", type=float, default=None,
                   help="std, correlation: stop once this fraction of all kernel weights is zero")
    g = p.add_argument_group("--method correlation")
    g.add_argument("--p", type=float, default=None,
                   help="fraction of each layer's survivors with the weakest |r| that may go (default 0.4)")
    g.add_argument("--record-fraction", type=float, default=None,
                   help="last fraction of the fine-tuning iterations over which r(w, dw) is recorded (default 0.1)")
    g.add_argument("--max-cycles", type=int, default=None, help="passes over all layers at most (default 10)")
    g.add_argument("--layers", nargs="*", default=None, help="layers in the order to prune (default: last to first)")
    g = p.add_argument_group("--method structured")
    g.add_argument("--criterion", choices=structured_criteria(), default=None, help="(default l1)")
    g.add_argument("--fraction", type=float, default=None,
                   help="channels removed per round (magnitude: weights per layer), unless --threshold (default 0.1)")
    g.add_argument("--threshold", type=float, default=None,
                   help="remove channels whose (normalized) score is below this; tlt's usual mode")
    g.add_argument("--scope", choices=["global", "layer"], default=None,
                   help="--fraction ranks channels across the network (global, default) or within each layer")
    g.add_argument("--rounds", type=int, default=None, help="rank-prune-retrain rounds at most (default 1)")
    g.add_argument("--equalization", choices=EQUALIZATIONS, default=None,
                   help="how channels joined by Add/Multiply/... get one score (TLT's default: union)")
    g.add_argument("--normalizer", choices=NORMALIZERS, default=None,
                   help="tlt: divide norms by the layer's max, mean, or the L2 norm of all its norms")
    g.add_argument("--granularity", type=int, default=None, help="kept channels per layer: a multiple of this")
    g.add_argument("--min-filters", type=int, default=None, help="never keep fewer channels in a layer")
    g.add_argument("--exclude", nargs="*", default=None, help="layers whose channels stay")
    g.add_argument("--fold-bn", action="store_true",
                   help="l1/l2/tlt: scale each filter's norm by the BatchNormalization right after it")
    p.add_argument("--strategy", choices=["default", "mirrored", "multiworker"], default=None,
                   help="fine-tune under tf.distribute: 'mirrored' = every GPU of this machine, 'multiworker' = "
                        "the cluster in TF_CONFIG (run the same command on every worker; only the chief writes). "
                        "--batch-size is then the global batch")
    progress_flag(p)


def add_prune_commands(sub, progress_flag) -> None:
    p = sub.add_parser("prune", help="prune with any method (std, correlation, structured); writes a .keras model")
    _common(p, progress_flag)
    p.add_argument("-o", "--output", required=True, help="the pruned model (.keras)")
    p.add_argument("--history", default=None, help="also write the pruning history as JSON")
    p.set_defaults(func=_cmd_prune)

    p = sub.add_parser("prune-structured", help="prune --method structured (whole filters/units, surgery)")
    _common(p, progress_flag, method_default="structured")
    p.add_argument("-o", "--output", required=True, help="the smaller model (.keras)")
    p.add_argument("--history", default=None, help="also write the rounds as JSON")
    p.set_defaults(func=_cmd_prune)

    p = sub.add_parser("compress", help="prune, remove dead units, pack, and report (with plots)")
    _common(p, progress_flag)
    p.add_argument("-o", "--output", required=True, help="the .sparse.h5 file")
    p.add_argument("--min-ratio", type=float, default=1.0)
    p.add_argument("--level", type=int, choices=[1, 2, 3], default=2,
                   help="storage effort: 1 fast, 2 default, 3 smallest")
    p.add_argument("--report-dir", default=None, help="plots + report.html (default: OUTPUT_report/)")
    p.add_argument("--json", default=None, help="also write summary, per-layer table and history as JSON")
    p.set_defaults(func=_cmd_compress)
