"""Compensation actions are plain functions named by import path, so any process can run them later.

An action is called as ``action(payload, idempotency_key)``. The key is stable per registered
compensation: an action that was interrupted mid-way (its process killed) runs again with the same
key on the next rollback, so actions that touch the outside world should use it to be idempotent.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from wflo_core.errors import CompensationError

Action = Callable[[dict[str, Any], str], object]


def action_path(action: Action | str) -> str:
    """``module:function`` of ``action``; verified importable now, not at rollback time."""
    path = action if isinstance(action, str) else f"{action.__module__}:{action.__qualname__}"
    resolve_action(path)
    return path


def resolve_action(path: str) -> Action:
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute or "<" in attribute:
        raise CompensationError(
            f"compensation action {path!r} must be a module-level function named 'package.module:function'"
        )
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as err:
        raise CompensationError(f"compensation action {path!r} cannot be imported: {err}") from None
    if not callable(target):
        raise CompensationError(f"compensation action {path!r} is not callable")
    action: Action = target  # a callable; its signature is the registrant's promise
    return action
