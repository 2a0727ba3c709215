"""Pruning Explorer core: UI-free library behind the Streamlit pages and the CLI."""
__version__ = "0.1.0"

from .checkpoint import load_checkpoint, load_pruned_model, save_checkpoint
from .models import MLP, SimpleNN, build_model

__all__ = ["MLP", "SimpleNN", "build_model", "load_checkpoint", "load_pruned_model",
           "save_checkpoint"]
