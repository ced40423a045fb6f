"""Helpers behind the command-line jobs in the repository's ``tools/``.

Each module has one job: run MMPose's stock tools (:mod:`.stock_tools`),
point a config at a COCO-format dataset (:mod:`.coco_files`), read the
AP table that ``tools/test.py`` prints (:mod:`.ap_table`), read and plot a
training log (:mod:`.training_log`), draw predicted skeletons
(:mod:`.skeletons`), look up the model-zoo numbers (:mod:`.model_zoo`),
compare measured and published APs (:mod:`.comparison`) and check a
checkpoint against a config before loading it (:mod:`.checkpoint_check`).

Nothing in :mod:`resnest_plugin.models` imports this package; importing it
does not import MMPose's heavy modules until a function needs them.
"""

__all__: list = []
