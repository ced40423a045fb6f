"""MMPose's ``TopDownCocoDataset`` with pre-flight checks that name the bad file.

Drop-in for ``type='TopDownCocoDataset'`` in a config:
``type='resnest_plugin.CheckedTopDownCocoDataset'``. The samples, their
order and the evaluation are MMPose's own (inherited unchanged); only the
errors differ. When the dataset is built it checks that the annotation
file, the image folder and (for detector-box testing) the detections file
exist and parse, and that every image the annotations name is on disk;
before each sample is loaded it checks that the image is not empty or
truncated, and any error inside MMPose's pipeline is re-raised with the
sample's image file in the message. See :mod:`resnest_plugin.data_checks`
for what MMPose reports without it.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from mmpose.datasets import TopDownCocoDataset

from ...data_checks import (DataCheckError, check_coco_annotations, check_detections, check_file,
                           check_folder, check_image_file, check_image_files)

__all__ = ["CheckedTopDownCocoDataset", "DataPipelineError"]


class DataPipelineError(DataCheckError, RuntimeError):
    """MMPose's data pipeline failed on one sample; the message names its image."""


class CheckedTopDownCocoDataset(TopDownCocoDataset):
    """``TopDownCocoDataset`` that validates its files and names them in errors.

    Args:
        ann_file: COCO keypoint annotation file.
        img_prefix: Folder holding the images.
        data_cfg: MMPose's ``data_cfg`` (``use_gt_bbox``, ``bbox_file``, ...).
        pipeline: The data pipeline (list of transform configs).
        dataset_info: MMPose dataset meta information.
        test_mode: Whether this is a test/validation set.

    Raises:
        resnest_plugin.data_checks.MissingDataError: A file or folder named
            by the config, or an image named by the annotations, is missing.
        resnest_plugin.data_checks.CorruptDataError: The annotation or
            detections file is empty or not the expected JSON.
    """

    def __init__(self, ann_file: str, img_prefix: str, data_cfg: Dict[str, Any],
                 pipeline: List[Dict[str, Any]], dataset_info: Optional[Dict[str, Any]] = None,
                 test_mode: bool = False) -> None:
        check_file(ann_file, "annotation file (ann_file)")
        check_folder(img_prefix, "image folder (img_prefix)")
        # Only a test set with use_gt_bbox=False reads the detector boxes
        # (TopDownCocoDataset._get_db).
        uses_detections = test_mode and not data_cfg["use_gt_bbox"]
        if uses_detections:
            check_file(data_cfg["bbox_file"], "person detection file (data_cfg.bbox_file)")
        try:
            super().__init__(ann_file, img_prefix, data_cfg, pipeline, dataset_info=dataset_info,
                             test_mode=test_mode)
        except Exception:
            # MMPose's own error (e.g. a JSONDecodeError from xtcocotools)
            # does not say which file; re-check them to name the culprit.
            # Parsing again costs nothing on the success path.
            check_coco_annotations(ann_file)
            if uses_detections:
                check_detections(data_cfg["bbox_file"])
            raise
        check_image_files((entry["image_file"] for entry in self.db),
                          what=f"image folder (img_prefix) {img_prefix}")

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        """Return sample ``idx`` through MMPose's pipeline, naming its image on failure.

        Args:
            idx: Sample index.

        Raises:
            resnest_plugin.data_checks.DataCheckError: The image is missing,
                empty or truncated, or the pipeline failed on it.
        """
        image_file = self.db[idx]["image_file"]
        check_image_file(image_file)
        try:
            return super().__getitem__(idx)
        except DataCheckError:
            raise
        except Exception as err:
            raise DataPipelineError(f"sample {idx} (image file {image_file}) failed in the data "
                                    f"pipeline: {type(err).__name__}: {err}") from err
