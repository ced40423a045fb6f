"""Pre-flight checks of a COCO-format keypoint dataset, with errors that name the bad file.

What MMPose 0.29 + mmcv 1.7 + OpenCV 4.11 do on their own (measured;
tests/mmpose0/test_data_errors.py keeps each case):

* missing image: ``FileNotFoundError`` naming the file, but only when the
  data loader reaches that sample (possibly hours into training);
* empty image file: ``cv2.error ... (-215:Assertion failed) !buf.empty() in
  function 'imdecode_'``, no file named;
* truncated or undecodable image: OpenCV returns no image and mmcv's
  ``imfrombytes`` converts it to RGB anyway: ``cv2.error ...
  !_src.empty() in function 'cvtColor'``, no file named;
* missing annotation JSON / missing ``data_root``: ``FileNotFoundError``
  naming the annotation path (not the config field or the missing folder);
* corrupt annotation or detections JSON: ``TypeError: JSONDecodeError.__init__()
  missing 2 required positional arguments: 'doc' and 'pos'`` - mmcv's
  ``build_from_cfg`` re-raises ``type(e)(message)``, which JSONDecodeError
  does not accept, so neither the file nor the JSON problem is named.

The functions below check each of these up front and raise
:class:`MissingDataError` (a ``FileNotFoundError``) or
:class:`CorruptDataError` (a ``ValueError``) whose message names the file,
the config field it came from and what was expected.
:class:`resnest_plugin.hosts.mmpose0.datasets.CheckedTopDownCocoDataset` runs them when
a dataset is built and when each sample is loaded.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, List, Union

__all__ = [
    "DataCheckError", "MissingDataError", "CorruptDataError", "check_file", "check_folder",
    "load_json", "check_coco_annotations", "check_detections", "check_image_file",
    "check_image_files",
]

PathLike = Union[str, "os.PathLike[str]"]

# File signatures and end markers. JPEG: SOI FFD8 ... EOI FFD9 (ITU-T T.81
# B.1.1.2); PNG: 8-byte signature ... IEND chunk + CRC (PNG spec 5.2, 11.2.5).
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"
# Some cameras append padding or a trailer after the JPEG EOI; look for the
# end marker in the last bytes rather than requiring it as the final two.
_TAIL_BYTES = 4096


class DataCheckError(Exception):
    """A dataset file is missing or unreadable; the message names it."""


class MissingDataError(DataCheckError, FileNotFoundError):
    """A file or folder named by the config does not exist."""


class CorruptDataError(DataCheckError, ValueError):
    """A file exists but its content is not what MMPose needs."""


def _missing_ancestor_hint(path: Path) -> str:
    """Say which folder of ``path`` is the first that does not exist, if any."""
    absolute = Path(os.path.abspath(path))
    for parent in reversed(absolute.parents):
        if not parent.exists():
            return (f"; the folder {parent} does not exist either (check the config's data_root "
                    "or pass --cfg-options data.<split>.ann_file=... data.<split>.img_prefix=...)")
    return ""


def check_file(path: PathLike, what: str) -> Path:
    """Raise unless ``path`` is an existing, non-empty file.

    Args:
        path: The file.
        what: What the file is, for the message (e.g. ``"annotation file
            (data.test.ann_file)"``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        MissingDataError: If it does not exist (naming the first missing folder).
        CorruptDataError: If it is a folder or empty.
    """
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"{what} {path} does not exist{_missing_ancestor_hint(path)}")
    if not path.is_file():
        raise CorruptDataError(f"{what} {path} is not a file: expected a file")
    if path.stat().st_size == 0:
        raise CorruptDataError(f"{what} {path} is empty (0 bytes)")
    return path


def check_folder(path: PathLike, what: str) -> Path:
    """Raise unless ``path`` is an existing folder.

    Args:
        path: The folder.
        what: What it is, for the message.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        MissingDataError: If it does not exist or is not a folder.
    """
    path = Path(path)
    if not path.is_dir():
        state = "is not a folder" if path.exists() else "does not exist"
        raise MissingDataError(f"{what} {path} {state}{_missing_ancestor_hint(path)}")
    return path


def load_json(path: PathLike, what: str) -> Any:
    """Load a JSON file, naming it when it is missing or malformed.

    Args:
        path: The file.
        what: What it is, for the message.

    Returns:
        The parsed content.

    Raises:
        MissingDataError: If it does not exist.
        CorruptDataError: If it is empty or not valid JSON (with the line
            and column of the first error).
    """
    path = check_file(path, what)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise CorruptDataError(f"{what} {path} is not valid JSON: {err.msg} at line {err.lineno}, "
                               f"column {err.colno} (a truncated download?)") from err
    except UnicodeDecodeError as err:
        raise CorruptDataError(f"{what} {path} is not UTF-8 text ({err.reason} at byte "
                               f"{err.start}): expected a JSON file") from err


def check_coco_annotations(path: PathLike, what: str = "annotation file (ann_file)") -> dict:
    """Check that a file is a COCO annotation JSON with ``images`` and ``annotations``.

    Args:
        path: The annotation file.
        what: What it is, for the message.

    Returns:
        The parsed annotations.

    Raises:
        MissingDataError: If it does not exist.
        CorruptDataError: If it is not JSON, not an object, or lacks the
            ``images`` / ``annotations`` lists or an image's ``id`` / ``file_name``.
    """
    data = load_json(path, what)
    if not isinstance(data, dict):
        raise CorruptDataError(f"{what} {path} holds a JSON {type(data).__name__}: expected a "
                               "COCO object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise CorruptDataError(f"{what} {path} has no '{key}' list: expected COCO keypoint "
                                   f"annotations (keys found: {sorted(data)})")
    for index, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise CorruptDataError(f"{what} {path}: images[{index}] = {image!r} lacks 'id' or "
                                   "'file_name'")
    return data


def check_detections(path: PathLike, what: str = "person detection file (data_cfg.bbox_file)"
                     ) -> list:
    """Check that a file is a non-empty COCO detection-results JSON.

    Args:
        path: The detections file.
        what: What it is, for the message.

    Returns:
        The parsed detections.

    Raises:
        MissingDataError: If it does not exist.
        CorruptDataError: If it is not JSON, not a non-empty list, or an
            entry lacks ``image_id`` / ``category_id`` / ``bbox`` / ``score``.
    """
    data = load_json(path, what)
    if not isinstance(data, list) or not data:
        kind = "an empty list" if isinstance(data, list) else f"a JSON {type(data).__name__}"
        raise CorruptDataError(f"{what} {path} holds {kind}: expected a non-empty list of "
                               "COCO detections (image_id, category_id, bbox, score)")
    for index, det in enumerate(data):
        required = {"image_id", "category_id", "bbox", "score"}
        if not isinstance(det, dict) or not required <= set(det):
            raise CorruptDataError(f"{what} {path}: entry {index} = {det!r} lacks one of "
                                   "image_id, category_id, bbox, score")
    return data


def check_image_file(path: PathLike) -> Path:
    """Check that an image file exists, is not empty and, for JPEG/PNG, is not truncated.

    Reads the first and last few bytes only (no decoding), so it is cheap
    enough to run before every sample is loaded.

    Args:
        path: The image.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        MissingDataError: If it does not exist.
        CorruptDataError: If it is empty, or a JPEG without its end-of-image
            marker, or a PNG without its IEND chunk (a truncated file, which
            OpenCV 4.11 refuses to decode, and mmcv then fails in
            ``cvtColor`` without naming the file).
    """
    path = check_file(path, "image file")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read()
    if head.startswith(_JPEG_SOI) and _JPEG_EOI not in tail:
        raise CorruptDataError(f"image file {path} is a truncated JPEG ({size} bytes, no "
                               "end-of-image marker FFD9): re-download or re-extract it")
    if head.startswith(_PNG_SIGNATURE) and _PNG_IEND not in tail:
        raise CorruptDataError(f"image file {path} is a truncated PNG ({size} bytes, no IEND "
                               "chunk): re-download or re-extract it")
    return path


def check_image_files(paths: Iterable[PathLike], what: str = "image folder (img_prefix)",
                      max_named: int = 5) -> List[Path]:
    """Check that every listed image exists, naming the missing ones.

    Args:
        paths: Image files (typically every ``image_file`` of a dataset).
        what: Where they are expected, for the message.
        max_named: How many missing files to quote.

    Returns:
        The unique paths, sorted.

    Raises:
        MissingDataError: If any is missing (quoting the first ``max_named``
            and the total count).
    """
    unique = sorted({Path(p) for p in paths})
    missing = [p for p in unique if not p.is_file()]
    if missing:
        more = f" and {len(missing) - max_named} more" if len(missing) > max_named else ""
        quoted = ", ".join(str(p) for p in missing[:max_named])
        raise MissingDataError(f"{len(missing)} of {len(unique)} images named by the annotations "
                               f"are missing from the {what}: {quoted}{more}")
    return unique
