"""Version of resnest_plugin (single source, read by setup.py)."""

__version__ = "0.1.0"
