"""ament_python package ``efc_ros``: installs ``efc_core`` and ``efc_ros`` and the ROS data files."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE_NAME = "efc_ros"

setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    packages=find_packages(include=["efc_core", "efc_core.*", "efc_ros", "efc_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
        (f"share/{PACKAGE_NAME}", ["package.xml"]),
        (f"share/{PACKAGE_NAME}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE_NAME}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE_NAME}/rviz", glob("rviz/*.rviz")),
        (f"share/{PACKAGE_NAME}/models", glob("models/*.onnx") + glob("models/*.json")),
    ],
    install_requires=["setuptools", "numpy", "opencv-python-headless", "pyyaml"],
    zip_safe=True,
    maintainer="efc_ros maintainers",
    maintainer_email="efc-ros@example.com",
    description="Joint video segmentation, optical flow and occlusion (Every Frame Counts) for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "perception_node = efc_ros.perception_node:main",
            "perception_lifecycle_node = efc_ros.lifecycle_node:main",
            "multi_camera_node = efc_ros.multi_camera:main",
            "efc = efc_ros.cli:main",
        ],
    },
)
