"""``python -m resnest_plugin.deploy``: see :mod:`resnest_plugin.deploy.cli`."""
import sys

from .cli import main

sys.exit(main())
