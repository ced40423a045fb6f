"""Helpers behind the MMPose 0.x command-line jobs in the repository's ``tools/``.

Each module has one job: point a config at a COCO-format dataset
(:mod:`.coco_files`), read and plot a training log (:mod:`.training_log`),
draw predicted skeletons (:mod:`.skeletons`), look up the model-zoo numbers
(:mod:`.model_zoo`) and check a checkpoint against a config before loading
it (:mod:`.checkpoint_check`). Finding and running MMPose's stock scripts is
:mod:`resnest_plugin.stock_tools`; reading, tabulating and comparing the COCO
statistics is :mod:`resnest_plugin.coco_metrics` (both generations).

Nothing in :mod:`resnest_plugin.models` imports this package; importing it
does not import MMPose's heavy modules until a function needs them.
"""

__all__: list = []
