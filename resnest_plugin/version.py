"""Version of resnest_plugin and its torch floor (single source, read by setup.py)."""

__version__ = "0.1.0"

#: The lowest torch the plugin supports and is tested on (rows: 1.13.1, 2.1.2, 2.14.1,
#: 2.15.0). ``import resnest_plugin`` refuses an older torch; newer APIs are
#: feature-detected in resnest_plugin/torch_compat.py.
MIN_TORCH = "1.13"
