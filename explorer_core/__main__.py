"""`python -m explorer_core`: the CLI, with Ctrl-C as one line and exit code 130.

Once interrupted, the process leaves with `os._exit` after flushing its streams:
a library can set CPython's "unhandled KeyboardInterrupt" flag while it swallows a
Ctrl-C, and a normal exit then kills the process with SIGINT instead (exit −2, seen in
2 of 10 Ctrl-Cs sent 3 s after `prune` started), although the run had been stopped
and its files written. An error raised after a Ctrl-C is the Ctrl-C's doing (a module
left half-imported), so it too ends as the interrupt, not as a traceback.
"""
import os
import signal
import sys

from .errors import interrupted, on_interrupt, raise_pending_interrupt

signal.signal(signal.SIGINT, on_interrupt)  # before the imports a Ctrl-C can break
try:
    from .cli import main  # imports torch: seconds, in which a Ctrl-C must be one line too

    raise_pending_interrupt()  # one in those imports, which `on_interrupt` let finish
    code = main()
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    code = 130
except Exception:
    if not interrupted():
        raise
    print("interrupted", file=sys.stderr)
    code = 130
if interrupted():
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
