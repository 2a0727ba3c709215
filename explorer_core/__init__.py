"""Pruning Explorer core: UI-free library behind the Streamlit pages and the CLI.

The public names are imported on first use (PEP 562): `python -m explorer_core` then
reaches its own Ctrl-C handling before torch is imported, instead of printing a
KeyboardInterrupt traceback when interrupted in its first seconds.
"""
import os
from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# Arrow's default allocator (mimalloc) costs a process 25-35 ms when pandas makes its first
# text column, the system allocator ~4 ms (measured with torch loaded, six runs each); our
# frames are a sweep's table, kilobytes, where the allocator's speed does not show. Set
# before pyarrow is imported, so it holds for the CLI and for every worker the app starts
# (they inherit the environment); a value the user set is kept.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

_EXPORTS = {"MLP": "models", "SimpleNN": "models", "build_model": "models",
            "load_checkpoint": "checkpoint", "load_pruned_model": "checkpoint",
            "save_checkpoint": "checkpoint"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
