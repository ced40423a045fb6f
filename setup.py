"""Packaging of resnest_plugin (pip install . / pip install -e .)."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION: dict = {}
exec((HERE / "resnest_plugin" / "version.py").read_text(), VERSION)

# The runner's floors are the oldest releases its tests ran with (Python 3.8:
# numpy 1.24, opencv 4.11, onnxruntime 1.19). OpenCV 5's warpAffine differs
# from 4.x by 1-5 grey levels in ~5% of crop pixels, so crops would no longer
# equal MMPose's (docs/deploy.md).
DEPLOY_REQUIRES = ["numpy>=1.24", "opencv-python-headless>=4.11,<5", "onnxruntime>=1.19"]

setup(
    name="resnest_plugin",
    version=VERSION["__version__"],
    description=("ResNeSt (Split-Attention Networks) backbone and COCO top-down configs for "
                 "MMPose 0.x (mmpose 0.29, mmcv-full 1.7) and MMPose 1.x (mmpose 1.3, mmcv 2.1)"),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["resnest_plugin", "resnest_plugin.*"]),
    include_package_data=True,
    # The support matrix (docs/compatibility.md) tests Python 3.8, 3.10, 3.11 and 3.12.
    python_requires=">=3.8",
    # torch is not an install requirement on purpose: an MMPose environment has
    # its torch already, with mmcv(-full) compiled against it, and a torch
    # requirement pip finds unmet there (an older torch, or one pip cannot see)
    # makes it install another torch under that mmcv; and the deploy runner
    # (extra "deploy") runs without torch. The floor, the lowest torch the
    # matrix tests (resnest_plugin/version.py MIN_TORCH), is stated
    # here as the "torch" extra and enforced by `import resnest_plugin`, which
    # names the installed torch and the floor. The OpenMMLab stack is not listed
    # either: mmpose 0.29.0's requirements pull chumpy, which no longer builds,
    # and mmcv must be compiled against the installed torch.
    # scripts/setup_env.sh installs a row of the matrix with the pins of
    # requirements/[<row>/]constraints.txt.
    install_requires=["numpy", "packaging"],
    extras_require={
        "torch": [f"torch>={VERSION['MIN_TORCH']}"],
        # What resnest_plugin.deploy.PoseEstimator imports, and nothing else.
        "deploy": DEPLOY_REQUIRES,
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.8",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
