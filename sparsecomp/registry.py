"""Name → object registries: the extension points (criteria, methods) looked up by name.

The CLI builds its ``choices=`` from them; a new entry is one ``register`` line.
"""

from __future__ import annotations

from .errors import BadArgumentError

__all__ = ["Registry"]


class Registry:
    """An ordered name → object map with a one-line description per entry."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, object] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, obj=None, *, help: str = ""):
        """``register(name, obj)``, or ``@register(name)`` as a decorator."""
        def add(o):
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = o
            self._help[name] = help or (getattr(o, "__doc__", "") or "").strip().split("\n")[0]
            return o
        return add(obj) if obj is not None else add

    def get(self, name: str):
        if name not in self._items:
            raise BadArgumentError(f"unknown {self.kind} {name!r}; one of {self.names()}", rule=f"argument.{self.kind}")
        return self._items[name]

    def names(self, where=None) -> list[str]:
        return [n for n, o in self._items.items() if where is None or where(o)]

    def help(self, name: str) -> str:
        return self._help[name]

    def __contains__(self, name) -> bool:
        return name in self._items

    def items(self):
        return self._items.items()
