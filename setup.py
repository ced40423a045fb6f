"""Packaging of resnest_plugin (pip install . / pip install -e .)."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION: dict = {}
exec((HERE / "resnest_plugin" / "version.py").read_text(), VERSION)

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
    python_requires=">=3.8",
    # The OpenMMLab stack is not listed here on purpose: the plugin goes into
    # the user's own MMPose 0.x or 1.x environment (either generation), mmpose
    # 0.29.0's own requirements pull chumpy, which no longer builds, and
    # mmcv(-full) must be compiled against the installed torch.
    # scripts/setup_env.sh installs a stack with the pins of
    # requirements/constraints.txt or requirements/mmpose1/constraints.txt.
    install_requires=["torch>=1.8", "packaging"],
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
