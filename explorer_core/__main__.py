import signal
import sys

from .errors import on_interrupt

signal.signal(signal.SIGINT, on_interrupt)  # before the imports a Ctrl-C can break
try:
    from .cli import main  # imports torch: seconds, in which a Ctrl-C must be one line too

    code = main()
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    code = 130
sys.exit(code)
