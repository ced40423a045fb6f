"""ResNeSt checkpoints: where names point, safe reading, key formats, loading, the report.

Host-free: nothing here imports MMPose, mmcv, mmengine or a registry. One
module per job:

* :mod:`.sources` - a checkpoint name -> a local file (paths, ``http(s)://``
  URLs, ``mmcls://`` / ``open-mmlab://`` model-zoo names through the tables
  a host hands over in a :class:`CheckpointSources`);
* :mod:`.safe_loading` - ``torch.load(weights_only=True)`` and its allow-list
  (numpy scalars of plain dtypes), never retried without it;
* :mod:`.formats` - MMPose/mmcls and official/timm key formats: detection and
  conversion to our names;
* :mod:`.layout` - what the keys say about the architecture (depth, stem
  width, shortcut indices);
* :mod:`.report` - :class:`LoadReport`, the one report of how a checkpoint fits
  a model (also printed by :mod:`resnest_plugin.hosts.mmpose0.checkpoint_check`);
* :mod:`.loading` - :func:`load_pretrained` and its strict modes;
* :mod:`.cli` - ``python -m resnest_plugin.weights convert IN OUT``.
"""
from .. import require_torch

require_torch()  # one line naming torch and the floor, not a bare "No module named 'torch'"

from .formats import FORMATS, convert_state_dict, detect_format, extract_state_dict
from .layout import depth_of, stage_blocks
from .loading import CheckpointLoadWarning, CheckpointMismatchError, load_pretrained
from .report import LoadReport, ShapeMismatch, compare_state_dicts
from .safe_loading import UnsafeCheckpointError, numpy_checkpoint_globals, read_checkpoint
from .sources import HOST_FREE_SOURCES, CheckpointSources, checkpoint_location, resolve_checkpoint

__all__ = [
    "CheckpointLoadWarning", "CheckpointMismatchError", "CheckpointSources", "FORMATS",
    "HOST_FREE_SOURCES", "LoadReport", "ShapeMismatch", "UnsafeCheckpointError",
    "checkpoint_location", "compare_state_dicts", "convert_state_dict", "depth_of",
    "detect_format", "extract_state_dict", "load_pretrained", "numpy_checkpoint_globals",
    "read_checkpoint", "resolve_checkpoint", "stage_blocks",
]
