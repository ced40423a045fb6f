"""MMPose 1.x's ``CocoDataset`` with errors that name a corrupt annotation or detections file.

What MMPose 1.3.2 reports itself (measured, ``tests/mmpose1/test_data_errors.py``): a
missing annotation or bbox file ("Annotation file `...` does not exist"), a missing image and
an empty or truncated image ("failed to load image: <path>") all name the file. A corrupt
annotation or detections JSON does not: ``json.JSONDecodeError: Expecting property name ...``
with neither the file nor the config field. Only that is wrapped here, with the host-free
checks of :mod:`resnest_plugin.data_checks`; samples, order and evaluation are MMPose's own.
"""
from __future__ import annotations

from typing import Any, Dict, List

from mmpose.datasets import CocoDataset

from ...data_checks import check_coco_annotations, check_detections

__all__ = ["CheckedCocoDataset"]


class CheckedCocoDataset(CocoDataset):
    """``CocoDataset`` whose annotation / detections parse errors name the file.

    Drop-in for ``type='CocoDataset'``: ``type='resnest_plugin.CheckedCocoDataset'``;
    same arguments as MMPose 1.x's ``CocoDataset``.

    Raises:
        resnest_plugin.data_checks.CorruptDataError: The annotation file
            (``ann_file``) or the detections file (``bbox_file``) is empty or
            not the expected JSON; the message names the file.
    """

    def load_data_list(self) -> List[Dict[str, Any]]:
        """MMPose's ``load_data_list``; on failure, re-check the files to name the culprit."""
        try:
            return super().load_data_list()
        except Exception:
            # Parsing again costs nothing on the success path; each check
            # raises a CorruptDataError naming its file, else MMPose's error stands.
            if self.ann_file:
                check_coco_annotations(self.ann_file)
            if self.bbox_file:
                check_detections(self.bbox_file, what="person detection file (bbox_file)")
            raise
