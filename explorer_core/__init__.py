"""Pruning Explorer core: UI-free library behind the Streamlit pages and the CLI.

The public names are imported on first use (PEP 562): `python -m explorer_core` then
reaches its own Ctrl-C handling before torch is imported, instead of printing a
KeyboardInterrupt traceback when interrupted in its first seconds.
"""
from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {"MLP": "models", "SimpleNN": "models", "build_model": "models",
            "load_checkpoint": "checkpoint", "load_pruned_model": "checkpoint",
            "save_checkpoint": "checkpoint"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
