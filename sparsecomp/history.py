"""What a pruning run decided, as plain data that round-trips through JSON.

:class:`PruneHistory` (std-threshold and correlation pruning: one :class:`PruneStep` per decision)
and :class:`StructuredHistory` (one :class:`StructuredRound` per round). Reports plot them, the
CLI writes them, checkpoints carry them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

__all__ = ["JsonRecord", "PruneStep", "PruneHistory", "StructuredRound", "StructuredHistory", "QuantizeTrial",
           "QuantizeHistory"]


class JsonRecord:
    """Plain-data dataclasses that round-trip through JSON (``asdict`` recurses into nested ones)."""

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent=2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


@dataclass
class PruneStep:
    """One decision of the schedule."""

    group: str
    q: float
    thresholds: dict
    sparsity: dict            # per layer, fraction of the kernel's weights that are zero
    total_sparsity: float     # over all prunable kernels of the model
    val_metric: float
    drop: float               # baseline - val_metric
    accepted: bool
    seconds: float
    epochs: int
    extra: dict = field(default_factory=dict)   # method-specific facts (cycle, p, recorded steps...)


@dataclass
class PruneHistory(JsonRecord):
    """Everything a pruning run decided, in order; plain data (``to_dict`` / ``to_json``).

    ``baseline`` is the dense model's validation metric the gate compares with; ``gate`` the
    margin rule in force (``settings["gate"]``); ``final_metric`` the returned model's validation
    metric. No test-set figure is ever stored here: the library never reads a test set.
    """

    metric: str
    baseline: float
    max_drop: float
    groups: dict
    sigma: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    final_sparsity: dict = field(default_factory=dict)
    final_metric: float | None = None
    seconds: float = 0.0
    resumed: list = field(default_factory=list)      # steps after which a run was resumed
    final_tuning: list = field(default_factory=list)  # validation metric after each final epoch
    final_kept: int = 0                                # which final epoch was kept (0: none)
    passes: list = field(default_factory=list)         # before each later pass: after_step, polish, kept

    def accepted_steps(self) -> list:
        return [s for s in self.steps if s.accepted]

    @property
    def epochs(self) -> int:
        """Fine-tuning epochs spent in all (recording, between-pass and final epochs included)."""
        return (sum(s.epochs for s in self.steps) + len(self.final_tuning)
                + sum(len(p.get("polish", [])) for p in self.passes))

    @classmethod
    def from_dict(cls, d: dict) -> "PruneHistory":
        d = dict(d)
        d["steps"] = [PruneStep(**s) for s in d.get("steps", [])]
        return cls(**d)


@dataclass
class StructuredRound:
    round: int
    criterion: str
    channels_removed: int
    filters: dict            # producer -> [kept, before this round]
    params: int
    val_metric: float
    drop: float
    accepted: bool
    seconds: float
    epochs: int
    sparsity: float = 0.0    # magnitude criterion: fraction of kernel weights that are zero


@dataclass
class StructuredHistory(JsonRecord):
    metric: str
    baseline: float
    max_drop: float
    dense_params: int
    settings: dict = field(default_factory=dict)
    rounds: list = field(default_factory=list)
    final_metric: float | None = None
    final_params: int | None = None
    seconds: float = 0.0
    resumed: list = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return sum(r.epochs for r in self.rounds)

    @classmethod
    def from_dict(cls, d: dict) -> "StructuredHistory":
        d = dict(d)
        d["rounds"] = [StructuredRound(**r) for r in d.get("rounds", [])]
        return cls(**d)


@dataclass
class QuantizeTrial:
    """One layer quantized at ``bits`` (``k`` shared values), fine-tuned, judged."""

    layer: str
    bits: int
    k: int
    val_metric: float
    drop: float
    accepted: bool
    epochs: int
    seconds: float


@dataclass
class QuantizeHistory(JsonRecord):
    """What :func:`sparsecomp.quantize` decided: every trial, and per layer the bits and the
    number of shared values kept. Without data, ``accuracy`` says it was not measured."""

    metric: str | None
    baseline: float | None
    max_drop: float | None
    settings: dict = field(default_factory=dict)
    trials: list = field(default_factory=list)
    layers: dict = field(default_factory=dict)
    final_metric: float | None = None
    seconds: float = 0.0
    accuracy: str = "measured on the validation data"
    resumed: list = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return sum(t.epochs for t in self.trials)

    @classmethod
    def from_dict(cls, d: dict) -> "QuantizeHistory":
        d = dict(d)
        d["trials"] = [QuantizeTrial(**t) for t in d.get("trials", [])]
        return cls(**d)
