"""The runner in a fresh venv with numpy, OpenCV and onnxruntime only: no torch, mmcv, mmengine or mmpose.

What ``pip install "resnest_plugin[deploy]"`` promises a CPU server: the
wheel with its ``deploy`` extra, which brings the three runtime packages (at
the versions pinned in requirements/constraints.txt, given as ``-c``). The test builds that venv,
runs ``PoseEstimator`` and ``python -m resnest_plugin.deploy infer`` there on
a bundled COCO image with a tiny export, and checks that torch and the
OpenMMLab packages were neither imported nor importable. Slow (a venv and
three downloads or wheel-cache hits); needs the package index pip is set up with.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import pytest
from deploy_helpers import write_tiny_model
from wheel_helpers import build_wheel, copy_working_tree

from resnest_plugin.deploy import PoseEstimator

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "tests" / "data" / "coco" / "000000196141.jpg"
RUNTIME_PACKAGES = ("numpy", "opencv-python-headless", "onnxruntime")
ABSENT = ("torch", "mmcv", "mmengine", "mmpose")
BOXES = [[20.0, 30.0, 300.0, 420.0], [-40.0, 100.0, 200.0, 700.0]]

_PROBE = """
import importlib.util, json, sys
import cv2
from resnest_plugin.deploy import PoseEstimator
estimator = PoseEstimator(sys.argv[1])
keypoints, scores = estimator(cv2.imread(sys.argv[2]), json.loads(sys.argv[3]))
print(json.dumps({
    "keypoints": keypoints.tolist(), "scores": scores.tolist(),
    "imported": sorted(m for m in sys.modules if m.split(".")[0] in %r),
    "importable": [m for m in %r if importlib.util.find_spec(m) is not None],
    "resnest_plugin": __import__("resnest_plugin").__file__,
}))
""" % (ABSENT, ABSENT)


def _pins() -> Dict[str, str]:
    """``name -> version`` of the runtime packages in requirements/constraints.txt."""
    text = (REPO / "requirements" / "constraints.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, flags=re.M))
    missing = [name for name in RUNTIME_PACKAGES if name not in pins]
    assert not missing, f"requirements/constraints.txt pins none of {missing}"
    return {name: pins[name] for name in RUNTIME_PACKAGES}


def _run(command: List[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_the_runner_works_in_a_venv_without_torch_or_openmmlab(tmp_path: Path) -> None:
    wheel = build_wheel(copy_working_tree(tmp_path / "src"), tmp_path / "wheelhouse")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = str(venv / "bin" / "python")
    # The extra as a user installs it, held to the pinned versions by the constraints file.
    constraints = REPO / "requirements" / "constraints.txt"
    _run([python, "-m", "pip", "install", "--disable-pip-version-check", f"{wheel}[deploy]",
          "-c", str(constraints)], cwd=tmp_path)
    listed = _run([python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"], cwd=tmp_path)
    installed = {entry["name"].lower(): entry["version"] for entry in json.loads(listed.stdout)}
    for name, version in _pins().items():
        assert installed.get(name.lower()) == version, (name, installed.get(name.lower()), version)
    model = write_tiny_model(tmp_path / "tiny.onnx", "mmpose0-default")

    probe = _run([python, "-c", _PROBE, str(model), str(IMAGE), json.dumps(BOXES)], cwd=tmp_path)
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert report["imported"] == [] and report["importable"] == [], report
    assert report["resnest_plugin"].startswith(str(venv)), report["resnest_plugin"]
    expected_keypoints, expected_scores = PoseEstimator(model)(cv2.imread(str(IMAGE)), BOXES)
    np.testing.assert_array_equal(np.array(report["keypoints"], np.float32), expected_keypoints)
    np.testing.assert_array_equal(np.array(report["scores"], np.float32), expected_scores)

    (tmp_path / "boxes.json").write_text(json.dumps(BOXES))
    _run([python, "-m", "resnest_plugin.deploy", "infer", str(model), str(IMAGE), "--boxes", "boxes.json",
          "--json", "keypoints.json", "--out", "drawn.png"], cwd=tmp_path)
    persons = json.loads((tmp_path / "keypoints.json").read_text())["persons"]
    assert len(persons) == 2 and cv2.imread(str(tmp_path / "drawn.png")).shape == cv2.imread(str(IMAGE)).shape
