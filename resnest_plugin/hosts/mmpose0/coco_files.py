"""Where a COCO-format keypoint dataset lives, and the ``--cfg-options`` that point a config there.

The shipped configs keep MMPose's default layout under ``data/coco``
(``annotations/person_keypoints_val2017.json``, ``val2017/``,
``person_detection_results/COCO_val2017_detections_AP_H_56_person.json``).
MMPose's tools accept ``--cfg-options key=value`` overrides, so the same
unmodified config runs on the bundled mini COCO (``tests/data/coco``,
flat layout) or on a user's copy of COCO elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from ...data_checks import (DataCheckError, check_coco_annotations, check_detections,
                           check_image_files)

__all__ = ["CocoFiles", "coco_val2017", "mini_coco", "cfg_options", "content_problems"]

# Download pages of the files a COCO val2017 evaluation needs; named in errors.
COCO_DOWNLOAD = "https://cocodataset.org/#download"
VAL2017_IMAGES_URL = "http://images.cocodataset.org/zips/val2017.zip"
ANNOTATIONS_URL = "http://images.cocodataset.org/annotations/annotations_trainval2017.zip"
# MMPose's COCO data-preparation page links the person boxes released with
# HRNet (Sun et al. 2019); its own configs expect them at this file name.
DETECTIONS_URL = ("https://mmpose.readthedocs.io/en/v0.29.0/tasks/2d_body_keypoint.html#coco "
                  "(OneDrive / GoogleDrive links of HRNet's COCO_val2017_detections_AP_H_56_person"
                  ".json)")


@dataclass(frozen=True)
class CocoFiles:
    """The files of a COCO-format top-down evaluation (and training) set.

    Attributes:
        ann_file: Keypoint annotations (COCO JSON).
        img_prefix: Folder holding the images named in ``ann_file``.
        bbox_file: Person detector boxes (COCO results JSON), used by the
            test set because the configs set ``use_gt_bbox=False``.
    """

    ann_file: Path
    img_prefix: Path
    bbox_file: Path

    def missing(self) -> List[str]:
        """Return one line per file or folder that does not exist, with where to get it."""
        problems = []
        if not self.ann_file.is_file():
            problems.append(f"annotation file {self.ann_file} not found (from "
                            f"annotations_trainval2017.zip, {ANNOTATIONS_URL})")
        if not self.img_prefix.is_dir():
            problems.append(f"image folder {self.img_prefix} not found (val2017.zip, "
                            f"{VAL2017_IMAGES_URL})")
        if not self.bbox_file.is_file():
            problems.append(f"person detection file {self.bbox_file} not found "
                            f"(see {DETECTIONS_URL})")
        return problems


def coco_val2017(data_root: Path, *, ann_file: Optional[Path] = None,
                 img_prefix: Optional[Path] = None,
                 bbox_file: Optional[Path] = None) -> CocoFiles:
    """Return the val2017 files under MMPose's standard COCO layout.

    Args:
        data_root: The folder MMPose's configs call ``data/coco``.
        ann_file: Override of ``annotations/person_keypoints_val2017.json``.
        img_prefix: Override of ``val2017/``.
        bbox_file: Override of ``person_detection_results/
            COCO_val2017_detections_AP_H_56_person.json``.

    Returns:
        Absolute paths (they need not exist; see :meth:`CocoFiles.missing`).
    """
    root = Path(data_root).resolve()
    return CocoFiles(
        ann_file=Path(ann_file or root / "annotations" / "person_keypoints_val2017.json").resolve(),
        img_prefix=Path(img_prefix or root / "val2017").resolve(),
        bbox_file=Path(bbox_file or root / "person_detection_results" /
                       "COCO_val2017_detections_AP_H_56_person.json").resolve(),
    )


def mini_coco(coco_root: Path) -> CocoFiles:
    """Return the files of the bundled mini COCO (``tests/data/coco``, flat layout).

    Args:
        coco_root: The mini COCO folder.
    """
    root = Path(coco_root).resolve()
    return CocoFiles(ann_file=root / "test_coco.json", img_prefix=root,
                     bbox_file=root / "test_coco_det_AP_H_56.json")


def cfg_options(files: CocoFiles, splits: Sequence[str] = ("train", "val", "test"),
                train_set: str = "data.train") -> List[str]:
    """Return ``--cfg-options`` items that point a top-down COCO config at ``files``.

    Args:
        files: The dataset files.
        splits: Which of ``data.train`` / ``data.val`` / ``data.test`` to
            redirect. Each split has its own ``data_cfg`` copy once mmcv has
            parsed the config, so ``bbox_file`` is set per split.
        train_set: Config key of the training dataset (``data.train.dataset``
            when the config wraps it, e.g. in a ``RepeatDataset``).

    Returns:
        ``key=value`` strings for MMPose's ``--cfg-options``.

    Raises:
        ValueError: If ``splits`` names something other than train/val/test.
    """
    unknown = sorted(set(splits) - {"train", "val", "test"})
    if unknown:
        raise ValueError(f"splits {unknown} not understood: expected any of train, val, test")
    # mmcv joins img_prefix and file_name with os.path.join: keep a trailing
    # slash like the shipped configs do.
    prefix = str(files.img_prefix).rstrip("/") + "/"
    options = []
    for split in splits:
        key = train_set if split == "train" else f"data.{split}"
        options += [f"{key}.ann_file={files.ann_file}",
                    f"{key}.img_prefix={prefix}",
                    f"{key}.data_cfg.bbox_file={files.bbox_file}"]
    return options


def content_problems(files: CocoFiles) -> List[str]:
    """Check that the files parse and that every annotated image is on disk.

    Run after :meth:`CocoFiles.missing` found nothing: it parses the
    annotation and detection JSON (MMPose's own error for a corrupt one
    names neither the file nor the JSON problem; see
    :mod:`resnest_plugin.data_checks`) and checks that each image the
    annotations list exists.

    Args:
        files: The dataset files.

    Returns:
        One line per problem, naming the file (empty when all is well).
    """
    problems = []
    try:
        annotations = check_coco_annotations(files.ann_file)
        check_image_files((files.img_prefix / image["file_name"] for image in
                           annotations["images"]), what=f"image folder {files.img_prefix}")
    except DataCheckError as err:
        problems.append(str(err))
    try:
        check_detections(files.bbox_file)
    except DataCheckError as err:
        problems.append(str(err))
    return problems
