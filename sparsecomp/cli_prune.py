"""``sparsecomp prune`` and ``sparsecomp compress``: argument parsing and printing only."""

from __future__ import annotations

import json
import sys
import tempfile
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


def _prune_kwargs(args, strategy=None):
    common = dict(strategy=strategy, max_drop=args.max_drop, target_sparsity=args.target_sparsity,
                  epochs=args.epochs, recovery_epochs=args.recovery_epochs, batch_size=args.batch_size,
                  learning_rate=args.lr, lr_decay=args.lr_decay, l2=args.l2,
                  validation_split=args.validation_split)
    if args.method == "correlation":
        for flag in ("groups", "q0", "step", "max_q", "min_step"):
            if getattr(args, flag) not in (None, _DEFAULTS_STD.get(flag)):
                raise BadArgumentError(f"--{flag.replace('_', '-')} belongs to --method std; correlation pruning "
                                       "takes --q, --p, --record-fraction, --max-cycles, --layers",
                                       rule="argument.method")
        if args.one_shot:
            raise BadArgumentError("--one-shot belongs to --method std", rule="argument.method")
        kw = dict(common, q=1.0 if args.q is None else args.q, p=args.p, record_fraction=args.record_fraction,
                  max_cycles=args.max_cycles, layers=args.layers or "auto")
        return kw
    for flag in ("layers",):
        if getattr(args, flag):
            raise BadArgumentError("--layers belongs to --method correlation (std uses --groups)",
                                   rule="argument.method")
    kw = dict(common, groups=_groups(args.groups), q0=args.q0, step=args.step, max_q=args.max_q,
              min_step=args.min_step, one_shot=args.one_shot)
    if args.q is not None:
        kw["q"] = args.q
    return kw


_DEFAULTS_STD = {"groups": None, "q0": 0.5, "step": 0.1, "max_q": 6.0, "min_step": None}


def _cmd_prune(args) -> int:
    from .correlation import prune_correlation
    from .pruning import prune
    prune = prune_correlation if args.method == "correlation" else prune
    strategy = _strategy(args)
    _outputs_of(args, strategy, ("output", "history"))
    model = _load_any(args.input)
    (x, y), _test = _data(args, model)
    pruned, history = prune(model, (x, y), progress=_StepPrinter(), **_prune_kwargs(args, strategy))
    pruned.save(args.output)
    if args.history:
        Path(args.history).write_text(history.to_json())
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
                   min_ratio=args.min_ratio, progress=_StepPrinter(), **_prune_kwargs(args, strategy))
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
    p.add_argument("--method", choices=["std", "correlation"], default="std",
                   help="std: iterative std-threshold over frozen groups (Han et al.); correlation: magnitude + "
                        "weight/change correlation, layer by layer from the last (Nomuunbayar & Kang)")
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
    p.add_argument("--lr-decay", type=float, default=1.0,
                   help="each step restarts at --lr and multiplies it by this after every epoch (default 1: constant)")
    p.add_argument("--l2", type=float, default=None,
                   help="L2 penalty on the kernels while fine-tuning, as Han et al. (default: the model's own)")
    p.add_argument("--validation-split", type=float, default=1 / 12, help="held out of the training data (default 5000 of 60000)")
    p.add_argument("--one-shot", action="store_true", help="prune once at --q (default --q0), no fine-tuning")
    p.add_argument("--q", type=float, default=None,
                   help="std --one-shot: the q to prune at; correlation: the magnitude cut in sigmas (default 1.0)")
    p.add_argument("--p", type=float, default=0.4,
                   help="correlation: fraction of each layer's survivors with the weakest |r| that may go")
    p.add_argument("--record-fraction", type=float, default=0.1,
                   help="correlation: last fraction of the fine-tuning iterations over which r(w, dw) is recorded")
    p.add_argument("--max-cycles", type=int, default=10, help="correlation: passes over all layers at most")
    p.add_argument("--layers", nargs="*", default=None,
                   help="correlation: layers in the order to prune (default: all, last to first)")
    p.add_argument("--strategy", choices=["default", "mirrored", "multiworker"], default=None,
                   help="fine-tune under tf.distribute: 'mirrored' = every GPU of this machine, 'multiworker' = "
                        "the cluster in TF_CONFIG (run the same command on every worker; only the chief writes). "
                        "--batch-size is then the global batch")
    progress_flag(p)


class _RoundPrinter:
    """One line per structured round: elapsed time, channels removed, parameters, val metric."""

    def __init__(self, stream=None):
        self.t0 = time.time()
        self.stream = stream or sys.stderr

    def __call__(self, r):
        mark = "accepted" if r.accepted else "REVERTED"
        what = f"sparsity {r.sparsity:.2%}" if r.criterion == "magnitude" else f"-{r.channels_removed} channels"
        self.stream.write(f"[{time.time() - self.t0:7.1f}s] round {r.round:2d} {r.criterion:<9} {what:<18} "
                          f"params {r.params:>10,}  val {r.val_metric:.4f} (drop {r.drop:+.4f}, {r.epochs} ep)  "
                          f"{mark}\n")
        self.stream.flush()


def _cmd_prune_structured(args) -> int:
    from .structured import prune_structured
    strategy = _strategy(args)
    _outputs_of(args, strategy, ("output", "history"))
    model = _load_any(args.input)
    (x, y), _test = _data(args, model)
    fraction = None if args.threshold is not None else args.fraction
    pruned, hist = prune_structured(
        model, (x, y), criterion=args.criterion, fraction=fraction, threshold=args.threshold, scope=args.scope,
        rounds=args.rounds, max_drop=args.max_drop, epochs=args.epochs, recovery_epochs=args.recovery_epochs,
        equalization=args.equalization, normalizer=args.normalizer, granularity=args.granularity,
        min_channels=args.min_filters, exclude=args.exclude or (), fold_bn=args.fold_bn, seed=args.seed, batch_size=args.batch_size,
        learning_rate=args.lr, validation_split=args.validation_split, strategy=strategy, progress=_RoundPrinter())
    pruned.save(args.output)
    if args.history:
        Path(args.history).write_text(hist.to_json())
    print(f"structured ({args.criterion}): parameters {hist.dense_params:,} -> {hist.final_params:,} "
          f"({hist.dense_params / max(hist.final_params, 1):.2f}x fewer); validation {hist.metric} "
          f"{hist.baseline:.4f} -> {hist.final_metric:.4f}")
    last = [r for r in hist.rounds if r.accepted]
    if last:
        print("filters per layer: " + ", ".join(f"{k} {v[0]}/{hist.rounds[0].filters[k][1]}"
                                                for k, v in last[-1].filters.items()))
    print(f"wrote {args.output}")
    return 0


def add_prune_commands(sub, progress_flag) -> None:
    p = sub.add_parser("prune", help="iterative std-threshold pruning over frozen layer groups")
    _common(p, progress_flag)
    p.add_argument("-o", "--output", required=True, help="the pruned model (.keras)")
    p.add_argument("--history", default=None, help="also write the pruning history as JSON")
    p.set_defaults(func=_cmd_prune)

    p = sub.add_parser("prune-structured", help="remove whole filters/units ranked by l1, l2, apoz, random or tlt "
                                                 "(or k%% smallest weights: magnitude), retrain, repeat")
    p.add_argument("input", help="a .keras or .sparse.h5 model")
    p.add_argument("-o", "--output", required=True, help="the smaller model (.keras)")
    p.add_argument("--data", default="mnist", help="training data: 'mnist' (built-in, offline)")
    p.add_argument("--mnist-dir", default=None)
    p.add_argument("--criterion", choices=["l1", "l2", "apoz", "random", "tlt", "magnitude"], default="l1")
    p.add_argument("--fraction", type=float, default=0.1,
                   help="channels removed per round (magnitude: weights per layer), unless --threshold is given")
    p.add_argument("--threshold", type=float, default=None,
                   help="remove channels whose (normalized) score is below this; tlt's usual mode")
    p.add_argument("--scope", choices=["global", "layer"], default="global",
                   help="--fraction ranks channels across the network (global) or within each layer")
    p.add_argument("--rounds", type=int, default=1, help="rank-prune-retrain rounds at most")
    p.add_argument("--max-drop", type=float, default=0.01,
                   help="a round that leaves validation accuracy more than this below the dense one is reverted")
    p.add_argument("--epochs", type=int, default=1, help="retraining epochs per round")
    p.add_argument("--recovery-epochs", type=int, default=0)
    p.add_argument("--equalization", choices=["arithmetic_mean", "geometric_mean", "union", "intersection"],
                   default="union", help="how channels joined by Add/Multiply/... get one score (TLT's default: union)")
    p.add_argument("--normalizer", choices=["max", "mean", "l2"], default="max",
                   help="tlt: divide norms by the layer's max, mean, or the L2 norm of all its norms")
    p.add_argument("--granularity", type=int, default=1, help="kept channels per layer: a multiple of this (tlt: 8)")
    p.add_argument("--min-filters", type=int, default=1, help="never keep fewer channels in a layer (tlt: 16)")
    p.add_argument("--exclude", nargs="*", default=None, help="layers whose channels stay")
    p.add_argument("--fold-bn", action="store_true",
                   help="l1/l2/tlt: scale each filter's norm by the BatchNormalization right after it")
    p.add_argument("--seed", type=int, default=0, help="for --criterion random")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--validation-split", type=float, default=1 / 12)
    p.add_argument("--strategy", choices=["default", "mirrored", "multiworker"], default=None)
    p.add_argument("--history", default=None, help="also write the rounds as JSON")
    progress_flag(p)
    p.set_defaults(func=_cmd_prune_structured)

    p = sub.add_parser("compress", help="prune, remove dead units, pack, and report (with plots)")
    _common(p, progress_flag)
    p.add_argument("-o", "--output", required=True, help="the .sparse.h5 file")
    p.add_argument("--min-ratio", type=float, default=1.0)
    p.add_argument("--report-dir", default=None, help="plots + report.html (default: OUTPUT_report/)")
    p.add_argument("--json", default=None, help="also write summary, per-layer table and history as JSON")
    p.set_defaults(func=_cmd_compress)
