"""``sparsecomp prune`` and ``sparsecomp compress``: argument parsing and printing only.

The choices come from the registries (:data:`sparsecomp.methods.METHODS`,
:data:`sparsecomp.criteria.CRITERIA`); each method's own flags are listed once in
:data:`METHOD_FLAGS`, and a flag of another method is refused by name.
"""

from __future__ import annotations

import atexit
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .criteria import EQUALIZATIONS, NORMALIZERS
from .distribute import STRATEGIES
from .errors import BadArgumentError
from .outputs import check_outputs
from .methods import METHODS
from .training import GATES

__all__ = ["add_prune_commands", "METHOD_FLAGS"]

#: flag dest -> keyword of the method function, per method.
METHOD_FLAGS = {
    "std": {"groups": "groups", "q0": "q0", "step": "step", "max_q": "max_q", "min_step": "min_step",
            "max_reverts": "max_reverts", "group_settings": "group_settings", "one_shot": "one_shot", "q": "q",
            "target_sparsity": "target_sparsity", "final_epochs": "final_epochs", "passes": "passes"},
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
                "seed": "seed", "expected_baseline": "expected_baseline", "distill": "distill",
                "temperature": "temperature"}


def _load_any(args):
    from .model_io import load
    p = Path(args.input)
    if not p.exists():
        raise BadArgumentError(f"no such file: {args.input}", rule="argument.input")
    return load(p, architecture=getattr(args, "architecture", None))


def _data(args, model, spec=None, limit=None):
    """``(train, test, notes)`` from --data (or ``spec``), shaped and scaled for ``model``."""
    from .data import load_data, prepare
    source = load_data(spec or args.data, model=model)
    train, test, notes = prepare(source, model, input_scale=args.input_scale,
                                 limit=args.limit if spec is None else limit)
    return train, test, [source.source] + notes


def _validation(args, model, notes) -> dict:
    """``{"validation_data": (x, y)}`` from --validation-data (its training part, prepared as --data
    is), or ``{}``; its test part is never read."""
    if not getattr(args, "validation_data", None):
        return {}
    (x, y), _test, vnotes = _data(args, model, spec=args.validation_data)
    notes.append(f"validation: the {len(x):,} training samples of {vnotes[0]} (every decision is made on "
                 f"them; --validation-split is not used, all of --data trains)")
    return {"validation_data": (x, y)}


def _ensure_compiled(model, y, notes) -> None:
    """A model without a training config (Keras 2 files saved without optimizer, weights-only
    files) is compiled for fine-tuning: Adam, cross-entropy matching the labels and the output."""
    if getattr(model, "compiled", False) and model.get_compile_config():
        return
    import keras
    last = model.layers[-1].get_config().get("activation") if model.layers else None
    logits = last not in ("softmax", "sigmoid")
    one_hot = getattr(y, "ndim", 1) == 2
    loss = (keras.losses.CategoricalCrossentropy(from_logits=logits) if one_hot
            else keras.losses.SparseCategoricalCrossentropy(from_logits=logits))
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    notes.append(f"the model had no training config: fine-tuning with Adam and {type(loss).__name__}"
                 f"{' (from logits)' if logits else ''}")


def _groups(spec):
    if not spec:
        return "auto"
    return [g.split(",") for g in spec]


class _StepPrinter:
    """One line per pruning step (structured round, weight-sharing trial): elapsed time, sparsity,
    decision, and an estimate of what is left.

    Steps are uneven (recovery epochs, reverts), so the estimate is a rough guide, not a bound: the
    number of steps the schedule has left at its nominal step size (std: the ``q`` values left up to
    ``max_q`` in this group and the later groups; correlation: the layers left in this cycle and the
    cycles after; structured: the rounds left) times the mean duration of a step so far. Half-step
    retries (``--min-step``), per-group settings and a stop at ``--target-sparsity`` are not foreseen;
    weight-sharing trials show no estimate.
    """

    def __init__(self, args=None, n_groups=None, stream=None):
        self.t0 = time.time()
        self.n = 0
        self.args = args
        self.n_groups = n_groups
        self.groups_seen: list[str] = []
        self.stream = stream or sys.stderr

    def _left(self, s) -> int | None:
        a = self.args
        if a is None:
            return None
        if hasattr(s, "round"):
            return max((a.rounds or 1) - s.round, 0)
        if a.method == "correlation":
            layers = self.n_groups or 1
            return max(layers * (a.max_cycles or 10) - self.n, 0)
        if s.group not in self.groups_seen:
            self.groups_seen.append(s.group)
        step, q0, max_q = a.step or 0.1, a.q0 if a.q0 is not None else 0.5, a.max_q if a.max_q is not None else 6.0
        per_group = int((max_q - q0) / step) + 1
        here = max(int((max_q - s.q) / step), 0)
        later = max((self.n_groups or 1) - len(self.groups_seen), 0)
        return here + later * per_group

    def __call__(self, s):
        elapsed = time.time() - self.t0
        if hasattr(s, "bits"):                     # a weight-sharing trial (compress --bits)
            self.stream.write(f"[{elapsed:7.1f}s] share  {s.layer:<6} {s.bits} bits ({s.k} values)  "
                              f"val {s.val_metric:.4f} (drop {s.drop:+.4f}, {s.epochs} ep)  "
                              f"{'accepted' if s.accepted else 'REVERTED'}\n")
            self.stream.flush()
            return
        self.n += 1
        left = self._left(s)
        eta = f"  ETA ~{left * elapsed / self.n / 60:.1f} min" if left is not None else ""
        mark = "accepted" if s.accepted else "REVERTED"
        if hasattr(s, "round"):
            what = f"sparsity {s.sparsity:.2%}" if s.criterion == "magnitude" else f"-{s.channels_removed} channels"
            self.stream.write(f"[{elapsed:7.1f}s] round {s.round:2d} {s.criterion:<9} {what:<18} "
                              f"params {s.params:>10,}  val {s.val_metric:.4f} (drop {s.drop:+.4f}, {s.epochs} ep)"
                              f"  {mark}{eta}\n")
        else:
            bar = "#" * int(round(s.total_sparsity * 20))
            self.stream.write(f"[{elapsed:7.1f}s] step {self.n:3d} {s.group:<6} q={s.q:<5.2f} "
                              f"sparsity [{bar:<20}] {s.total_sparsity:7.2%}  val {s.val_metric:.4f} "
                              f"(drop {s.drop:+.4f}, {s.epochs} ep)  {mark}{eta}\n")
        self.stream.flush()


def _strategy(args):
    """The strategy first (MultiWorkerMirroredStrategy must exist before any other TensorFlow work)."""
    if not args.strategy:
        return None
    from .distribute import get_strategy
    return get_strategy(args.strategy, timeout=args.worker_timeout or None)


def _outputs_of(args, strategy, names):
    """Non-chief workers of a multi-worker run write into a temporary folder, never the real paths
    (removed when the command exits)."""
    from .distribute import is_chief
    if is_chief(strategy):
        return None
    tmp = tempfile.mkdtemp(prefix="sparsecomp-worker-")
    atexit.register(shutil.rmtree, tmp, True)
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
    if kw.get("temperature") is not None and not kw.get("distill"):
        raise BadArgumentError("--temperature softens distillation's targets: it needs --distill WEIGHT (> 0)",
                               rule="argument.temperature")
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


def _run_kwargs(args) -> dict:
    """Checkpoints and interruption: --checkpoint-dir/--resume, else the last decided state goes
    to OUTPUT.interrupted on Ctrl-C."""
    if args.resume and not args.checkpoint_dir:
        raise BadArgumentError("--resume needs --checkpoint-dir (the folder a run, or an interruption, wrote)",
                               rule="argument.resume")
    interrupt = None if args.checkpoint_dir else str(Path(args.output)) + ".interrupted"
    # the overwrite policy holds for the state folders too: a new run does not replace the state of
    # an earlier one (a folder only resumed from is read, and may hold anything)
    force = getattr(args, "force", False)
    if args.checkpoint_dir and not args.resume:
        check_outputs([("the checkpoint folder", args.checkpoint_dir, True)], force=force)
    if interrupt:
        check_outputs([("the folder an interruption saves to", interrupt, True)], force=force)
    return {"checkpoint_dir": args.checkpoint_dir, "resume": args.resume, "interrupt_dir": interrupt}


def _n_groups(args, model) -> int:
    from .masks import prunable_layers
    if args.method == "correlation":
        return len(args.layers) if args.layers else len(prunable_layers(model))
    if args.groups:
        return len(args.groups)
    from .pruning import default_groups
    return len(default_groups(model))


def _cmd_prune(args) -> int:
    strategy = _strategy(args)
    _outputs_of(args, strategy, ("output", "history"))
    check_outputs([("the output", args.output, False), ("the history", args.history, False)], force=args.force,
                  inputs=[args.input])
    model = _load_any(args)
    train, _test, notes = _data(args, model)
    validation = _validation(args, model, notes)
    _ensure_compiled(model, train[1], notes)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    pruned, history = METHODS.get(args.method)(model, train, progress=_StepPrinter(args, _n_groups(args, model)),
                                               **_method_kwargs(args, strategy), **_run_kwargs(args), **validation)
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


def _print_summary(res_summary: dict, notes) -> None:
    w = max(len(k) for k in res_summary)
    for k, v in res_summary.items():
        print(f"{k:<{w}}  {v}")
    for n in notes:
        print(f"note: {n}")


def _cmd_compress_data_free(args, outputs) -> int:
    """--no-data: magnitude/std cut to --target-sparsity; nothing is evaluated, nothing claimed."""
    from .datafree import pack_data_free, prune_data_free
    from .model_io import is_sparse_file
    if args.target_sparsity is None:
        raise BadArgumentError("--no-data needs --target-sparsity (nothing can tell how far to prune without data)",
                               rule="argument.target_sparsity")
    if args.bits == "search":
        raise BadArgumentError("--bits search needs data to judge each layer; with --no-data give a number of bits",
                               rule="argument.bits")
    if args.validation_data:
        raise BadArgumentError("--validation-data needs data to train on; --no-data prunes without any",
                               rule="argument.validation_data")
    check_outputs(outputs, force=args.force, inputs=[args.input])
    weights_only = not is_sparse_file(args.input) and args.architecture is None and _weights_only(args.input)
    if weights_only:                                    # tensor level: the file keeps its layout
        report, info = pack_data_free(args.input, args.output, args.target_sparsity,
                                      criterion=args.data_free_criterion, exclude=args.exclude or (),
                                      bits=_bits(args.bits), init=args.quantize_init,
                                      min_ratio=args.min_ratio, level=args.level)
        print(report.format_table())
        summary = {"mode": "data-free, tensor level (the checkpoint keeps its layout)",
                   "criterion": info.criterion, "q (std)": info.q, "target sparsity": info.target_sparsity,
                   "kernel sparsity reached": round(info.total_sparsity, 5), "accuracy": info.accuracy,
                   "source bytes": report.source_bytes, ".sparse.h5 bytes": report.file_bytes,
                   "file ratio (source / sparse)": round(report.source_bytes / report.file_bytes, 2)}
    else:
        from .compress import keras_dense_bytes
        from .model_io import save
        from .surgery import remove_dead_units
        model = _load_any(args)
        pruned, info = prune_data_free(model, args.target_sparsity, criterion=args.data_free_criterion,
                                       exclude=args.exclude or ())
        small, plans = remove_dead_units(pruned)
        bits = _bits(args.bits)
        if bits is not None:                     # post-training sharing: codebooks, no fine-tuning
            from .quantize import quantize
            small, qh = quantize(small, None, bits=bits, init=args.quantize_init)
        storage = save(small, args.output, min_ratio=args.min_ratio, level=args.level)
        print(storage.format_table())
        keras_bytes = keras_dense_bytes(model)
        nz = sum(int((w != 0).sum()) for w in small.get_weights())
        summary = {"mode": "data-free, model level", "criterion": info.criterion, "q (std)": info.q,
                   "target sparsity": info.target_sparsity, "kernel sparsity reached": round(info.total_sparsity, 5),
                   "accuracy": info.accuracy, "dense parameters": int(model.count_params()),
                   **({"bits per layer (post-training, not fine-tuned)": {n: v["bits"] for n, v in qh.layers.items()}}
                      if bits is not None else {}),
                   "non-zero parameters after": nz, "dead units removed": sum(p.n_units for p in plans),
                   "Keras dense .keras bytes (no optimizer)": keras_bytes, ".sparse.h5 bytes": storage.file_bytes,
                   "file ratio (Keras / sparse)": round(keras_bytes / storage.file_bytes, 2)}
    print()
    _print_summary(summary, [])
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "data_free": info.to_dict()}, indent=2,
                                              default=str))
    return 0


def _json_dict(value):
    try:
        out = json.loads(value)
    except ValueError as exc:
        raise BadArgumentError(f"--group-settings takes a JSON object: {exc}", rule="argument.group_settings") from None
    if not isinstance(out, dict):
        raise BadArgumentError("--group-settings takes a JSON object of group name -> settings",
                               rule="argument.group_settings")
    return out


def _bits(value):
    """``--bits 5``, ``--bits search`` or ``--bits conv=8,fc=5``."""
    if value is None or value == "search":
        return value
    try:
        if "=" in value:
            return {k.strip(): int(v) for k, v in (part.split("=") for part in value.split(","))}
        return int(value)
    except ValueError:
        raise BadArgumentError(f"--bits takes a number of bits, 'search' or conv=N,fc=N. Received: {value!r}",
                               rule="argument.bits") from None


def _weights_only(path) -> bool:
    """An HDF5 checkpoint without a model config (Keras 2 ``save_weights``, Keras 3 ``.weights.h5``)."""
    import h5py
    try:
        with h5py.File(path, "r") as f:
            return "model_config" not in f.attrs
    except (OSError, ValueError):
        return False


def _compress_needs_keras(args) -> bool:
    """Everything but data-free compression of a weights-only checkpoint (tensor level: pure HDF5)."""
    from .model_io import is_sparse_file
    return not (args.no_data and args.architecture is None and not is_sparse_file(args.input)
                and _weights_only(args.input))


def _cmd_compress(args) -> int:
    from .compress import compress
    strategy = _strategy(args)
    report_dir = args.report_dir or str(Path(args.output).with_suffix("").with_suffix("")) + "_report"
    args.report_dir = report_dir
    _outputs_of(args, strategy, ("output", "report_dir", "json"))
    outputs = [("the output", args.output, False), ("the report folder", args.report_dir, True),
               ("the JSON summary", args.json, False)]
    if args.no_data:
        return _cmd_compress_data_free(args, outputs)
    check_outputs(outputs, force=args.force, inputs=[args.input])
    model = _load_any(args)
    train, test, notes = _data(args, model)
    validation = _validation(args, model, notes)
    _ensure_compiled(model, train[1], notes)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    res = compress(model, train, args.output, method=args.method, test_data=test, report_dir=args.report_dir,
                   min_ratio=args.min_ratio, level=args.level, quantize=_bits(args.bits),
                   quantize_options={"min_bits": args.min_bits, "max_bits": args.max_bits, "init": args.quantize_init},
                   progress=_StepPrinter(args, _n_groups(args, model)), **_method_kwargs(args, strategy),
                   **_run_kwargs(args), **validation)
    print(res.storage.format_table())
    print()
    for plan in res.plans:
        print(plan)
    print()
    _print_summary(res.summary, notes)
    print(f"\nreport: {res.report_html}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": res.summary, "notes": notes, "layers": res.layers,
                                               "history": res.history.to_dict()}, indent=2, default=str))
    return 0


def _common(p, progress_flag, *, method_default="std"):
    from .structured import structured_criteria
    from .data import INPUT_SCALES
    p.add_argument("input", help="a model: .keras, .h5 (Keras 2 or 3), .sparse.h5, or weights (.h5, .weights.h5) "
                                 "with --architecture")
    p.add_argument("--architecture", default=None, metavar="MODULE:FUNCTION",
                   help="builds the model for a weights-only checkpoint (e.g. models.zoo:vgg19)")
    p.add_argument("--method", choices=METHODS.names(), default=method_default,
                   help="; ".join(f"{n}: {METHODS.help(n)}" for n in METHODS.names()))
    g = p.add_argument_group("data")
    g.add_argument("--data", default="mnist",
                   help="'mnist' (built-in, offline), a directory of idx files, an .npz (x_train, y_train[, x_test, "
                        "y_test]), an image directory (a folder per class, or train/ and test/), or module:function")
    g.add_argument("--input-scale", choices=INPUT_SCALES, default="auto",
                   help="auto: integer pixels as 0-255 when the model rescales them itself (a leading Rescaling or "
                        "Normalization), else 0-1; raw; 0-1; -1-1")
    g.add_argument("--limit", type=int, default=None, help="use the first N training samples (quick runs)")
    g = p.add_argument_group("runs")
    g.add_argument("--checkpoint-dir", default=None, help="keep the run's state here after every decided step")
    g.add_argument("--resume", action="store_true", help="continue the run whose state is in --checkpoint-dir")
    g.add_argument("--force", action="store_true", help="replace existing outputs")
    g = p.add_argument_group("fine-tuning (every method)")
    g.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs after each step (default 1)")
    g.add_argument("--recovery-epochs", type=int, default=None,
                   help="extra epochs a step may use to recover before it is reverted (default 2; structured 0)")
    g.add_argument("--max-drop", type=float, default=None,
                   help="allowed fall of validation accuracy (default 0.002 = 0.2 points; structured 0.01)")
    g.add_argument("--gate", choices=GATES, default=None,
                   help="fixed: drop <= max-drop; paired: drop + z standard errors <= max-drop")
    g.add_argument("--z", type=float, default=None, help="paired gate: the margin in standard errors (default 1)")
    g.add_argument("--distill", type=float, default=None, metavar="WEIGHT",
                   help="knowledge distillation: this weight on the cross-entropy to the softened predictions of "
                        "the model each stage starts from (the dense one for pruning, the pruned one for weight "
                        "sharing), 1 - WEIGHT on the labels' (default 0: off)")
    g.add_argument("--temperature", type=float, default=None, help="distillation's softening temperature (default 4)")
    g.add_argument("--batch-size", type=int, default=None, help="the global batch (default 128)")
    g.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default: the model's)")
    g.add_argument("--lr-decay", type=float, default=None,
                   help="each step restarts at --lr and multiplies it by this after every epoch (default 1: constant)")
    g.add_argument("--l2", type=float, default=None,
                   help="L2 penalty on the kernels while fine-tuning, as Han et al. (default: the model's own)")
    g.add_argument("--metric", default=None, help="the validation metric the gate reads (default accuracy)")
    g.add_argument("--validation-split", type=float, default=1 / 12,
                   help="held out of the training data (default 1/12: 5000 of MNIST's 60000)")
    g.add_argument("--validation-data", default=None, metavar="SOURCE",
                   help="decide on this data instead of a split of --data: the training part of SOURCE (forms as "
                        "--data), e.g. images like those the model will meet; its test part is never read")
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
    g.add_argument("--max-reverts", type=int, default=None,
                   help="end a group after this many reverted steps (default: only --min-step ends it)")
    g.add_argument("--group-settings", type=_json_dict, default=None, metavar="JSON",
                   help="per group: q0, step, max_q, min_step, max_reverts, epochs, recovery_epochs, e.g. "
                        "'{\"conv\": {\"step\": 0.5, \"epochs\": 1}}'")
    g.add_argument("--one-shot", action="store_true", help="prune once at --q (default --q0), no fine-tuning")
    g.add_argument("--q", type=float, default=None,
                   help="std --one-shot: the q to prune at; correlation: the magnitude cut in sigmas (default 1.0)")
    g.add_argument("--target-sparsity", type=float, default=None,
                   help="std, correlation: stop once this fraction of all kernel weights is zero")
    g.add_argument("--final-epochs", type=int, default=None,
                   help="std: after the schedule, up to this many epochs with every layer trainable (masks held); "
                        "the best on validation is kept if it beats the schedule's end (default 0)")
    g.add_argument("--passes", type=int, default=None,
                   help="std: go over the groups up to this many times while --target-sparsity is not reached; "
                        "each later pass starts every group from its last accepted q with half its step, after "
                        "--final-epochs with every layer trainable (default 1)")
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
    p.add_argument("--strategy", choices=STRATEGIES, default=None,
                   help="fine-tune under tf.distribute: 'mirrored' = every GPU of this machine, 'multiworker' = "
                        "the cluster in TF_CONFIG (run the same command on every worker; only the chief writes). "
                        "--batch-size is then the global batch")
    p.add_argument("--worker-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="multiworker: stop with an error when another worker has not answered for this long "
                        "(default 300; 0 waits forever)")
    progress_flag(p)


def add_prune_commands(sub, progress_flag) -> None:
    p = sub.add_parser("prune", help="prune with any method (std, correlation, structured); writes a .keras model")
    _common(p, progress_flag)
    p.add_argument("-o", "--output", required=True, help="the pruned model (.keras)")
    p.add_argument("--history", default=None, help="also write the pruning history as JSON")
    p.set_defaults(func=_cmd_prune, interruptible=True)

    p = sub.add_parser("prune-structured", help="prune --method structured (whole filters/units, surgery)")
    _common(p, progress_flag, method_default="structured")
    p.add_argument("-o", "--output", required=True, help="the smaller model (.keras)")
    p.add_argument("--history", default=None, help="also write the rounds as JSON")
    p.set_defaults(func=_cmd_prune, interruptible=True)

    p = sub.add_parser("compress", help="prune, remove dead units, pack, and report (with plots)")
    _common(p, progress_flag)
    p.add_argument("-o", "--output", required=True, help="the .sparse.h5 file")
    p.add_argument("--no-data", action="store_true",
                   help="no training data: cut every kernel to --target-sparsity (nothing is fine-tuned or "
                        "evaluated; reports say 'accuracy not measured')")
    p.add_argument("--data-free-criterion", choices=["std", "magnitude"], default="std",
                   help="--no-data: one q*sigma threshold over the network (std) or each kernel cut alike")
    g = p.add_argument_group("weight sharing (Deep Compression's stage two)")
    g.add_argument("--bits", default=None, metavar="N|search|conv=N,fc=N",
                   help="after pruning and dead-unit removal, share each layer's non-zeros among 2**N values "
                        "(k-means), fine-tuned; 'search': per layer, the fewest bits that pass the gate")
    g.add_argument("--min-bits", type=int, default=2, help="--bits search: from (default 2)")
    g.add_argument("--max-bits", type=int, default=8, help="--bits search: up to (default 8)")
    g.add_argument("--quantize-init", choices=["linear", "density"], default="linear",
                   help="k-means initialisation (Deep Compression: linear)")
    p.add_argument("--min-ratio", type=float, default=1.0)
    p.add_argument("--level", type=int, choices=[1, 2, 3], default=2,
                   help="storage effort: 1 fast, 2 default, 3 smallest")
    p.add_argument("--report-dir", default=None, help="plots + report.html (default: OUTPUT_report/)")
    p.add_argument("--json", default=None, help="also write summary, per-layer table and history as JSON")
    p.set_defaults(func=_cmd_compress, interruptible=True, needs_keras=_compress_needs_keras)
