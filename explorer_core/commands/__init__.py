"""CLI commands, one module each; importing this package registers them all."""
from . import retention  # noqa: F401
