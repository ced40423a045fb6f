"""The published COCO results of MMPose's four ResNeSt-50/101 top-down models.

Read from the model index that MMPose 0.29 itself ships
(``mmpose/.mim/configs/body/2d_kpt_sview_rgb_img/topdown_heatmap/coco/
resnest_coco.yml``, the source of its model-zoo page), so the numbers and
checkpoint URLs are MMPose's, not copies that could drift.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Mapping

from ...stock_tools import mmpose_mim_dir

__all__ = ["MODEL_NAMES", "ZooModel", "zoo_models", "YML_TO_TEST_KEYS"]

MODEL_NAMES = ("resnest50_coco_256x192", "resnest50_coco_384x288",
               "resnest101_coco_256x192", "resnest101_coco_384x288")

_CONFIG_DIR = "configs/body/2d_kpt_sview_rgb_img/topdown_heatmap/coco"

# Metric names of MMPose's model index -> the keys tools/test.py prints.
YML_TO_TEST_KEYS = {"AP": "AP", "AP@0.5": "AP .5", "AP@0.75": "AP .75", "AR": "AR",
                    "AR@0.5": "AR .5"}


@dataclass(frozen=True)
class ZooModel:
    """One released model.

    Attributes:
        name: Config stem shared by MMPose's config and ours, e.g.
            ``"resnest50_coco_256x192"``.
        mmpose_config: MMPose's config path relative to its ``.mim/configs``.
        weights_url: Download URL of the released checkpoint.
        metrics: Published COCO val2017 results, keyed like ``tools/test.py``
            prints them (``AP``, ``AP .5``, ``AP .75``, ``AR``, ``AR .5``).
    """

    name: str
    mmpose_config: str
    weights_url: str
    metrics: Mapping[str, float]

    @property
    def checkpoint_name(self) -> str:
        """File name of the released checkpoint (the last part of its URL)."""
        return self.weights_url.rsplit("/", 1)[-1]


def zoo_models(names: Iterable[str] = MODEL_NAMES) -> Dict[str, ZooModel]:
    """Return the published results of the named models, from MMPose's model index.

    Args:
        names: Config stems; default the four ResNeSt-50/101 COCO models.

    Returns:
        ``{name: ZooModel}`` in the order of ``names``.

    Raises:
        KeyError: If a name is not in MMPose's ResNeSt COCO model index.
    """
    import yaml

    index_file = mmpose_mim_dir() / _CONFIG_DIR / "resnest_coco.yml"
    with open(index_file, encoding="utf-8") as handle:
        index = yaml.safe_load(handle)
    by_name = {}
    for entry in index["Models"]:
        stem = entry["Config"].rsplit("/", 1)[-1][:-len(".py")]
        metrics = entry["Results"][0]["Metrics"]
        by_name[stem] = ZooModel(
            name=stem,
            mmpose_config=entry["Config"][len("configs/"):],
            weights_url=entry["Weights"],
            metrics={YML_TO_TEST_KEYS[k]: float(v) for k, v in metrics.items()
                     if k in YML_TO_TEST_KEYS})
    models = {}
    for name in names:
        if name not in by_name:
            raise KeyError(f"model {name!r} is not in {index_file}: expected one of "
                           f"{sorted(by_name)}")
        models[name] = by_name[name]
    return models
