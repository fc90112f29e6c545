"""pip-installable core of pop3d_ros (training, evaluation, export) — no ROS needed.

On a ROS 2 system the same package is built by colcon (CMakeLists.txt), which also
generates `pop3d_ros.srv`. Here, `pip install .` gives the ROS-free core and the `pop3d` CLI.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

version = re.search(
    r'^__version__ = "([^"]+)"', Path("pop3d_ros/__init__.py").read_text(), re.M
).group(1)

setup(
    name="pop3d_ros",
    version=version,
    description="Open-vocabulary 3D occupancy (POP-3D) for ROS 2: core, training and export",
    python_requires=">=3.10",
    packages=find_packages(include=["pop3d_ros", "pop3d_ros.*"]),
    package_data={"pop3d_ros": ["data/*.yaml", "export/*.yaml", "export/*.json"]},
    install_requires=[
        "numpy",
        "pyyaml",
        "tqdm",
        "torch",
        "torchvision",
        "onnx",
        "onnxruntime",
        "opencv-python-headless",
        "pillow",
        # the `pop3d` commands' options come from the config dataclasses (pop3d_ros/cli_config.py)
        "tyro>=1.0",
    ],
    extras_require={
        "clip": ["open_clip_torch"],
        "train": ["tensorboard", "open_clip_torch"],
        "bag": ["mcap", "mcap-ros2-support"],
        # Strongly typed builds (export/trt_builder.py, SUPPORTED_TENSORRT); the API surface of
        # both majors is exercised by test/test_engine_builder_fake.py.
        "tensorrt": ["tensorrt>=10.0,<12"],
    },
    entry_points={"console_scripts": ["pop3d = pop3d_ros.cli:main"]},
)
