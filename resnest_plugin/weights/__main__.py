"""``python -m resnest_plugin.weights``: the command line of :mod:`.cli`."""
import sys

from .cli import main

sys.exit(main())
