"""Lazy package exports (PEP 562): ``import wflo_dagster`` stays cheap until a name is first used.

The CLI imports a package to reach one command; importing every public name eagerly would pull in
Dagster, the provider SDKs and SQLAlchemy models before ``--help`` could answer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``exports[name]`` (a module path) on first access."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
