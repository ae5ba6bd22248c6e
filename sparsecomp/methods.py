"""The pruning methods, looked up by name: each is its criterion plus its schedule over the
fine-tuning engine (:mod:`sparsecomp.training`). A new method is one function and one line here.

Every method is called as ``method(model, data, *, validation_data=None, strategy=None,
checkpoint_dir=None, resume=False, interrupt_dir=None, progress=None, tuning=None,
**its own settings and FineTuning fields)`` and returns ``(model, history)``.
"""

from __future__ import annotations

from .correlation import prune_correlation
from .pruning import prune
from .registry import Registry
from .structured import prune_structured

__all__ = ["METHODS"]

METHODS = Registry("method")
METHODS.register("std", prune, help="iterative std-threshold pruning over frozen layer groups (Han et al. 2015)")
METHODS.register("correlation", prune_correlation,
                 help="magnitude + weight/change correlation, layer by layer from the last (Nomuunbayar & Kang 2018)")
METHODS.register("structured", prune_structured,
                 help="whole filters/units ranked by l1, l2, apoz, random or tlt, removed by surgery, retrained")
