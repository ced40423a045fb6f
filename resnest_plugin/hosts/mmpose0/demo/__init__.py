"""The helpers of the README's first command, ``make demo`` (``tools/run_demo.py``), on MMPose 0.x.

Each module has one job: the demo's training regime and why it deviates
from the recipe (:mod:`.regime`), the initial checkpoint of its warm start
(:mod:`.initial_checkpoint`), reading and plotting MMPose's training log
(:mod:`.training_log`) and drawing predicted against annotated skeletons
(:mod:`.skeletons`).
"""

__all__: list = []
