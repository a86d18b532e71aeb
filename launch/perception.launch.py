"""Launch the efc_ros perception node for one camera, optionally with rviz2.

    ros2 launch efc_ros perception.launch.py image_topic:=/camera/image_raw namespace:=front
    ros2 launch efc_ros perception.launch.py backend:=tensorrt model_path:=/models/efc.engine rviz:=true

Outputs appear under the namespace (``/front/segmentation``, ``/front/flow``, ...), so one launch
per camera never clashes. Parameters come from ``params_file`` (default: the package's
``config/perception.yaml``); ``backend``, ``model_path`` and ``use_sim_time`` override it. The
``backend`` argument's choices, default and description are ``efc_core.perceptor_config``'s (the
package installs ``efc_core``; that module is numpy-tier: importing it loads no inference library
and takes about 0.15 s).

``dds_profile`` (default: the package's ``config/fastdds_large_images.xml``) is the Fast DDS
profile given to the node and to rviz2 (both ``FASTDDS_`` and ``FASTRTPS_DEFAULT_PROFILES_FILE``):
a 64 MB shared-memory segment so that 640x480 images and the 2.5 MB flow output survive
best-effort QoS (README "Large images over DDS"). ``dds_profile:=none`` keeps Fast DDS's defaults;
``dds_profile:=/path/own.xml`` uses your own. The camera driver needs it too (export it there).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable, UnsetEnvironmentVariable
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from efc_core.perceptor_config import PERCEPTOR_FIELDS

PACKAGE = "efc_ros"
#: Fast DDS 3 (Kilted+) and Fast DDS 2 (Humble, Jazzy) spellings of the default-profile variable.
PROFILE_ENV_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
#: The node's ``backend`` parameter (choices, default, description): the launch argument restates nothing.
BACKEND = next(setting for setting in PERCEPTOR_FIELDS if setting.ros_name == "backend")


def generate_launch_description() -> LaunchDescription:
    """Arguments: image_topic, namespace, params_file, backend, model_path, use_sim_time, rviz, log_level,
    dds_profile.
    """
    share = FindPackageShare(PACKAGE)
    image_topic = LaunchConfiguration("image_topic")
    namespace = LaunchConfiguration("namespace")
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)

    arguments = [
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw",
                              description="Camera topic (sensor_msgs/Image); <image_topic>/compressed with "
                                          "use_compressed."),
        DeclareLaunchArgument("namespace", default_value="efc",
                              description="Namespace of the node and of all its outputs (one per camera)."),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "perception.yaml"]),
                              description="YAML file with the node's parameters (/**: ros__parameters:)."),
        DeclareLaunchArgument("backend", default_value=BACKEND.default, choices=list(BACKEND.choices),
                              description=BACKEND.description),
        DeclareLaunchArgument("model_path", default_value="",
                              description="Model (.onnx, .engine or checkpoint); "
                                          "empty = the shipped real-camera model (efc_camvid_tiny)."),
        DeclareLaunchArgument("use_sim_time", default_value="false", choices=["true", "false"],
                              description="Use /clock (rosbag play --clock)."),
        DeclareLaunchArgument("rviz", default_value="false", choices=["true", "false"],
                              description="Also start rviz2 with rviz/perception.rviz."),
        DeclareLaunchArgument("log_level", default_value="info", description="Logging level of the node."),
        DeclareLaunchArgument("dds_profile",
                              default_value=PathJoinSubstitution([share, "config", "fastdds_large_images.xml"]),
                              description="Fast DDS profile for the node and rviz2 (large-image shared memory); "
                                          "'none' = Fast DDS defaults, or a path to your own XML."),
    ]

    # Set before the nodes so that both processes inherit it; "none" also tells the node itself
    # (efc_ros.dds_profile) not to pick the shipped profile.
    profile = LaunchConfiguration("dds_profile")
    profile_off = PythonExpression(["'", profile, "'.strip().lower() in ('', 'none', 'off')"])
    dds_environment = [SetEnvironmentVariable(name, profile, condition=UnlessCondition(profile_off))
                       for name in PROFILE_ENV_VARS]
    dds_environment += [UnsetEnvironmentVariable(name, condition=IfCondition(profile_off)) for name in PROFILE_ENV_VARS]
    dds_environment.append(SetEnvironmentVariable("EFC_DDS_PROFILE", "none", condition=IfCondition(profile_off)))

    perception = Node(
        package=PACKAGE,
        executable="perception_node",
        name="efc_perception",
        namespace=namespace,
        output="screen",
        emulate_tty=True,
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "backend": LaunchConfiguration("backend"),
                # value_type=str keeps an empty path a string instead of YAML null.
                "model_path": ParameterValue(LaunchConfiguration("model_path"), value_type=str),
                "use_sim_time": use_sim_time,
            },
        ],
        remappings=[("image", image_topic), ("image/compressed", [image_topic, "/compressed"])],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
    )

    # rviz2 runs in the same namespace so the relative topics of perception.rviz resolve to this
    # node's outputs; its "image" display is remapped to the camera like the node's input.
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="efc_rviz",
        namespace=namespace,
        arguments=["-d", PathJoinSubstitution([share, "rviz", "perception.rviz"])],
        parameters=[{"use_sim_time": use_sim_time}],
        remappings=[("image", image_topic)],
        condition=IfCondition(LaunchConfiguration("rviz")),
        output="screen",
    )

    return LaunchDescription(arguments + dds_environment + [perception, rviz])
