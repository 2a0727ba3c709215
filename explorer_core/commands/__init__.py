"""CLI commands, one module each; importing this package registers them all."""
from . import prune, retention  # noqa: F401
from . import prune_once  # noqa: F401
from . import datasets  # noqa: F401
from . import inspect  # noqa: F401
from . import train_time  # noqa: F401
from . import compare  # noqa: F401
