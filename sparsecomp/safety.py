"""Refusing model configs whose rebuilding would run code from the file.

Keras rebuilds a model from JSON. Most of it is data, but a ``Lambda`` layer carries Python
bytecode, and an object from a module other than Keras imports and runs that module's code.
Both are refused before Keras sees the config, unless the caller opts in.
"""

from __future__ import annotations

from .errors import UnsafeModelError

__all__ = ["check_config_safe"]

_CODE_CLASSES = {"Lambda", "__lambda__", "TFOpLambda", "SlicingOpLambda"}


def _is_keras_module(module) -> bool:
    return module is None or module == "keras" or str(module).startswith("keras.") \
        or module == "builtins"


def check_config_safe(config, *, custom_objects=None, allow_unsafe: bool = False,
                      file=None) -> None:
    """Raise :class:`UnsafeModelError` if rebuilding ``config`` would run code from the file.

    Refused: ``Lambda`` layers (they hold bytecode), serialized Python lambdas, and objects from
    modules other than Keras whose class is not in ``custom_objects`` (importing them runs code).
    ``allow_unsafe=True`` disables the check (only for files you trust).
    """
    if allow_unsafe:
        return
    known = set(custom_objects or ())
    stack = [(config, "config")]
    steps = 0
    while stack:
        node, where = stack.pop()
        steps += 1
        if steps > 5_000_000:
            raise UnsafeModelError("model config is too large to check", rule="model.config.size", file=file)
        if isinstance(node, dict):
            cls = node.get("class_name")
            if isinstance(cls, str) and cls in _CODE_CLASSES and cls not in known:
                name = node.get("config", {}).get("name") if isinstance(node.get("config"), dict) else None
                raise UnsafeModelError(
                    f"{cls} layer {name!r} holds Python code; refusing to rebuild it "
                    "(pass safe_mode=False only for a file you trust)", rule="model.lambda",
                    file=file, member=where)
            if "__lambda__" in node or node.get("class_name") == "function" and node.get("module") \
                    and not _is_keras_module(node.get("module")) and node.get("config") not in known:
                raise UnsafeModelError("serialized Python function in the model config", rule="model.function",
                                       file=file, member=where)
            module = node.get("module")
            if isinstance(cls, str) and "config" in node and not _is_keras_module(module) \
                    and cls not in known and str(node.get("registered_name")) not in known:
                raise UnsafeModelError(
                    f"object {cls!r} from module {module!r} is not part of Keras; pass it in "
                    "custom_objects if you trust it", rule="model.unknown_object", file=file, member=where)
            for k, v in node.items():
                if isinstance(v, (dict, list)):
                    stack.append((v, f"{where}.{k}"))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, (dict, list)):
                    stack.append((v, f"{where}[{i}]"))
