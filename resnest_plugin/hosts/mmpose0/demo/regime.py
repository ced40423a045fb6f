"""The main job's training regime: overfit the bundled people, as ``--cfg-options`` with reasons.

The practice every ML engineer trusts to check a training pipeline: let the
network memorise a handful of samples, then evaluate it on the same samples.
If the loss does not fall and the AP does not climb, something between the
data, the model and the tools is broken. It is not generalisation: the
model-zoo AP needs ImageNet weights and COCO train2017.

Every deviation from our ResNeSt-50 256x192 recipe is one ``--cfg-options``
item of MMPose's stock ``tools/train.py`` / ``tools/test.py``, listed here
once with the reason (``make demo`` prints them, the README repeats them).
Measured on 2 CPU cores (README "Quick start"): with augmentation on, the
same run reached AP 0.09 after 200 iterations; at 256x192 one iteration of
12 crops costs ~4x as much as at 128x96.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

__all__ = ["DemoRegime", "Option", "TRAIN_SET", "options_text"]

#: Where the training set sits in the demo config (configs/demo/resnest50_coco_overfit_mini.py):
#: inside a RepeatDataset, so that mmcv's 2 s sleep per epoch is paid once per ``repeat``
#: iterations instead of once per iteration.
TRAIN_SET = "data.train.dataset"
#: Largest number of passes over the 12 people per epoch.
MAX_REPEAT = 10


@dataclass(frozen=True)
class Option:
    """One ``--cfg-options`` item and why the demo sets it.

    Attributes:
        key: Dotted config key.
        value: The value as ``--cfg-options`` spells it.
        why: The reason, one line.
    """

    key: str
    value: str
    why: str

    @property
    def item(self) -> str:
        """``key=value`` as the stock tools take it."""
        return f"{self.key}={self.value}"


@dataclass(frozen=True)
class DemoRegime:
    """The overfitting regime of ``make demo``.

    Attributes:
        iterations: Training iterations (each one batch of all the people).
        people: Annotated people in the training set (the batch size).
        input_size: Network input ``(width, height)``.
        lr: Adam learning rate.
        eval_interval: Evaluate on the training people (ground-truth boxes)
            every this many iterations during training, for the AP marks of
            the loss curve.
        seed: Training seed.
    """

    iterations: int = 120
    people: int = 12
    input_size: Tuple[int, int] = (96, 128)
    lr: float = 2e-3
    eval_interval: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations {self.iterations}: expected at least 1")
        if self.people < 2:
            raise ValueError(f"people {self.people}: expected at least 2 (BatchNorm after global "
                             "pooling cannot normalise a batch of one, ResNeSt#35)")
        if any(side % 32 for side in self.input_size):
            raise ValueError(f"input_size {self.input_size}: expected multiples of 32 (the "
                             "backbone's stride; the heatmap is a quarter of the input)")
        if self.eval_interval < 1:
            raise ValueError(f"eval_interval {self.eval_interval}: expected at least 1")

    @property
    def repeat(self) -> int:
        """Passes over the people per epoch: the largest divisor of both
        ``iterations`` and ``eval_interval`` up to :data:`MAX_REPEAT`, so that
        epochs tile the run and the evaluations fall on epoch ends."""
        return math.gcd(math.gcd(self.iterations, self.eval_interval), MAX_REPEAT)

    @property
    def epochs(self) -> int:
        """``total_epochs`` of the run."""
        return self.iterations // self.repeat

    @property
    def heatmap_size(self) -> Tuple[int, int]:
        """Heatmap ``(width, height)``: a quarter of the input, as in the recipe."""
        return self.input_size[0] // 4, self.input_size[1] // 4

    def size_options(self, splits: Sequence[str]) -> List[Option]:
        """The input / heatmap size of ``splits`` (each split has its own ``data_cfg``)."""
        width, height = self.input_size
        hm_width, hm_height = self.heatmap_size
        options = []
        for split in splits:
            key = TRAIN_SET if split == "train" else f"data.{split}"
            options += [
                Option(f"{key}.data_cfg.image_size", f"[{width},{height}]",
                       "128x96 instead of 256x192: ~4x fewer MACs per crop, so 2 CPU cores "
                       "train in minutes; 12 people still fill the crops"),
                Option(f"{key}.data_cfg.heatmap_size", f"[{hm_width},{hm_height}]",
                       "a quarter of the input, as in the recipe"),
            ]
        return options

    def train_options(self) -> List[Option]:
        """Every ``--cfg-options`` item of the demo's ``tools/train.py`` run."""
        pipeline = f"{TRAIN_SET}.pipeline"
        return [
            Option("model.pretrained", "None",
                   "no ImageNet weights offline: train from random initialisation"),
            *self.size_options(("train", "val", "test")),
            Option("data.samples_per_gpu", str(self.people),
                   "all 12 people in one batch: full-batch BatchNorm statistics, as the "
                   "evaluation of the same people uses"),
            Option("data.shuffle", "False",
                   "with the repeated set, every batch is exactly the 12 people"),
            Option("data.train.times", str(self.repeat),
                   f"{self.repeat} passes per epoch: mmcv sleeps 2 s at every epoch start"),
            Option("data.workers_per_gpu", "0",
                   "load in the main process: 2 cores, and errors are raised in place"),
            Option(f"{pipeline}.2.prob", "0", "augmentation off (random box shift): the test "
                   "is memorisation; with augmentation on AP was 0.09 after 200 iterations"),
            Option(f"{pipeline}.3.flip_prob", "0", "augmentation off (random flip)"),
            Option(f"{pipeline}.4.prob_half_body", "0", "augmentation off (half-body crops)"),
            Option(f"{pipeline}.5.rot_factor", "0", "augmentation off (random rotation)"),
            Option(f"{pipeline}.5.scale_factor", "0", "augmentation off (random scale)"),
            Option("optimizer.lr", f"{self.lr:g}",
                   "4x the recipe's 5e-4: a few dozen full-batch steps must move the weights"),
            Option("lr_config.warmup_iters", "10", "the recipe warms up for 500 iterations"),
            Option("lr_config.step", f"[{self.epochs + 1}]", "no decay inside the run"),
            Option("total_epochs", str(self.epochs), f"{self.iterations} iterations"),
            Option("log_config.interval", "1", "log every iteration"),
            Option("checkpoint_config.interval", str(self.epochs),
                   "keep the last checkpoint only (~0.3 GB each with Adam's state)"),
            Option("data.val.data_cfg.use_gt_bbox", "True",
                   "in-training AP on the training people's ground-truth boxes"),
            Option("evaluation.interval", str(self.eval_interval // self.repeat),
                   f"AP marks on the loss curve, every {self.eval_interval} iterations"),
            Option("model.test_cfg.flip_test", "False",
                   "the in-training AP as the final ground-truth-box one: no flip test"),
            Option("evaluation.save_best", "None", "no extra 0.3 GB checkpoints"),
        ]

    def test_options(self, *, gt_boxes: bool, flip_test: bool) -> List[Option]:
        """The ``--cfg-options`` items of one ``tools/test.py`` evaluation."""
        options = [
            *self.size_options(("test",)),
            Option("data.workers_per_gpu", "0", "load in the main process"),
            Option("data.test.data_cfg.use_gt_bbox", str(gt_boxes),
                   "ground-truth boxes of the training people" if gt_boxes else
                   "the 118 detector boxes of the bundled detections file"),
        ]
        if not flip_test:
            options.append(Option("model.test_cfg.flip_test", "False",
                                  "no flip test: the network never saw a flipped person (with "
                                  "flip: AP 0.77 instead of 0.87 after 150 iterations)"))
        return options


    def inference_options(self) -> List[Option]:
        """The ``--cfg-options`` of MMPose's inference API (the drawings) for the trained model.

        ``inference_top_down_pose_model`` reads the config's top-level
        ``data_cfg`` and ``test_pipeline``, not ``data.test`` (mmpose 0.29
        ``apis/inference.py``), so the input size is set there too.
        """
        width, height = self.input_size
        hm_width, hm_height = self.heatmap_size
        return [
            Option("data_cfg.image_size", f"[{width},{height}]",
                   "the inference API reads the top-level data_cfg"),
            Option("data_cfg.heatmap_size", f"[{hm_width},{hm_height}]",
                   "the inference API reads the top-level data_cfg"),
            Option("model.test_cfg.flip_test", "False", "as the ground-truth-box evaluation"),
        ]


def options_text(options: Sequence[Option]) -> str:
    """The options as printed by ``make demo``: ``key=value  # why``, one per line."""
    width = max(len(option.item) for option in options)
    return "\n".join(f"  {option.item:<{width}}  # {option.why}" for option in options)
