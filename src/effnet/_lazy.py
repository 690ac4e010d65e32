"""A package's names imported on first use: its `__getattr__`, `__dir__` and `__all__` from one table.

Packages whose modules pull in torch, onnxruntime or a benchmark's child process use it, so that importing the
package itself costs nothing until a name is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, names: Mapping[str, tuple[str, ...]], namespace: dict[str, Any]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """(`__all__`, `__getattr__`, `__dir__`) for `package`, whose `names` maps each submodule to the names it provides.

    `namespace` is the package's `globals()`, so `dir()` lists its own names too."""
    table = {name: module for module, provided in names.items() for name in provided}

    def getattr_(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(table))

    return sorted(table), getattr_, dir_
