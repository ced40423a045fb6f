"""Calibration crops for the INT8 export: the people of the bundled mini COCO, or the user's images.

Torch-free (numpy + opencv). The crops are what the runner feeds the file:
uint8 BGR ``(H, W, 3)`` person crops, cut by the runner's own functions
(:mod:`.boxes`: MMPose's box -> centre/scale and affine warp of the
generation that built the model).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Tuple, Union

import cv2
import numpy as np

from .boxes import geometry_for, warp_crops

__all__ = ["BUNDLED_COCO", "IMAGE_SUFFIXES", "CalibrationDataError", "bundled_people",
           "calibration_crops", "calibration_files"]

#: The mini COCO bundled with a clone (4 val2017 images, 14 annotated people).
BUNDLED_COCO = Path(__file__).resolve().parents[2] / "tests" / "data" / "coco"
#: Image files ``--calib-images`` reads.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class CalibrationDataError(ValueError):
    """The INT8 export has no usable calibration images (missing, empty or unreadable)."""


def bundled_people(coco_root: Path = BUNDLED_COCO) -> List[Tuple[Path, List[float]]]:
    """``(image file, GT box)`` of every annotated person of a COCO keypoint file.

    Raises:
        CalibrationDataError: If the folder or its ``test_coco.json`` is missing.
    """
    annotations = coco_root / "test_coco.json"
    if not annotations.is_file():
        raise CalibrationDataError(
            f"no calibration data: the bundled mini COCO ({annotations}) exists only in a clone "
            "of resnest_plugin; pass --calib-images DIR with person crops of your own data")
    coco = json.loads(annotations.read_text())
    files = {image["id"]: coco_root / image["file_name"] for image in coco["images"]}
    return [(files[a["image_id"]], list(a["bbox"])) for a in coco["annotations"]
            if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0)]


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise CalibrationDataError(f"calibration image {path} cannot be read as an image")
    return image


def calibration_files(images_dir: Union[str, Path]) -> List[Path]:
    """The image files of a ``--calib-images`` folder, sorted by name.

    Raises:
        CalibrationDataError: If the folder is missing or holds no image file.
    """
    folder = Path(images_dir)
    if not folder.is_dir():
        raise CalibrationDataError(f"--calib-images {folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CalibrationDataError(f"--calib-images {folder}: no image files "
                                   f"({', '.join(IMAGE_SUFFIXES)}) in it")
    return files


def calibration_crops(generation: str, input_size: Tuple[int, int], heatmap_size: Tuple[int, int],
                      box_padding: float, images_dir: Optional[Union[str, Path]] = None) -> np.ndarray:
    """The crops to calibrate on, uint8 BGR ``(N, H, W, 3)``.

    Args:
        generation: ``"mmpose0"`` or ``"mmpose1"``: whose box arithmetic cuts the crops.
        input_size: ``(W, H)`` of the model's crops.
        heatmap_size: ``(w, h)`` of its heatmaps.
        box_padding: The model's box padding (for the bundled people's boxes).
        images_dir: A folder of person crops (``.jpg``/``.jpeg``/``.png``/``.bmp``;
            each whole image is one person box, fitted to the input's aspect
            ratio without padding), or ``None`` for the people of the bundled
            mini COCO (GT boxes, ``box_padding``).

    Returns:
        The stacked crops.

    Raises:
        CalibrationDataError: If the folder is missing, holds no image, or an
            image cannot be read; or, without a folder, if the bundled mini COCO
            is not there (installed wheel).
    """
    crops = []
    if images_dir is None:
        geometry = geometry_for(generation, input_size, heatmap_size, box_padding)
        for path, (x, y, w, h) in bundled_people():
            centers, scales = geometry.center_scale(np.array([[x, y, x + w, y + h]], dtype=np.float32))
            crops.append(warp_crops(_read(path), geometry, centers, scales)[0])
    else:
        geometry = geometry_for(generation, input_size, heatmap_size, 1.0)
        for path in calibration_files(images_dir):
            image = _read(path)
            whole = np.array([[0, 0, image.shape[1], image.shape[0]]], dtype=np.float32)
            centers, scales = geometry.center_scale(whole)
            crops.append(warp_crops(image, geometry, centers, scales)[0])
    if not crops:
        raise CalibrationDataError("no calibration crops: the bundled mini COCO lists no person")
    return np.stack(crops)
