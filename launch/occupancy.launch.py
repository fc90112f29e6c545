"""Launch the pop3d occupancy node (and optionally RViz).

    ros2 launch pop3d_ros occupancy.launch.py [params_file:=...] [backend:=auto|tensorrt|
        onnxruntime|torch] [model_dir:=...] [use_sim_time:=true|false] [rviz:=true|false]

Parameter precedence: the node's declared defaults < `params_file` < the launch arguments
`backend`, `model_dir`, `use_sim_time` given explicitly on the command line. Those arguments
default to "" (not given), so a user's params file is never overridden by a launch default.

No DDS transport setting is made here: a node whose transports differ from a
default-configured process exchanges nothing with it (ros2 CLI, RViz, camera drivers). Faster
settings for large images are a system-wide choice (README, "DDS settings for six large
image streams").
"""

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

NODE_ARGUMENTS = ("backend", "model_dir", "use_sim_time")  # override params_file when given


def _node_and_rviz(context):
    share = get_package_share_directory("pop3d_ros")
    value = {name: LaunchConfiguration(name).perform(context) for name in NODE_ARGUMENTS}
    overrides = {name: v for name, v in value.items() if v != ""}
    if "use_sim_time" in overrides:
        overrides["use_sim_time"] = overrides["use_sim_time"].lower() == "true"
    params_file = LaunchConfiguration("params_file").perform(context) or (
        share + "/config/occupancy.yaml"
    )
    # launch_ros applies parameter entries in order, a later entry overriding an earlier one.
    actions = [
        Node(
            package="pop3d_ros",
            executable="occupancy_node",
            name="pop3d_occupancy",
            output="screen",
            parameters=[params_file, overrides] if overrides else [params_file],
        )
    ]
    if LaunchConfiguration("rviz").perform(context).lower() == "true":
        try:
            get_package_share_directory("rviz2")
        except PackageNotFoundError:
            get_logger("pop3d_ros").warning("rviz:=true but rviz2 is not installed; node only")
        else:
            sim_time = overrides.get("use_sim_time", False)
            actions.append(
                Node(
                    package="rviz2",
                    executable="rviz2",
                    name="rviz2",
                    arguments=["-d", share + "/config/pop3d.rviz"],
                    parameters=[{"use_sim_time": sim_time}],
                )
            )
    return actions


def generate_launch_description():
    args = [
        DeclareLaunchArgument(
            "params_file",
            default_value="",
            description="node parameters YAML; empty: the package's config/occupancy.yaml",
        ),
        DeclareLaunchArgument(
            "backend",
            default_value="",
            choices=["", "auto", "tensorrt", "onnxruntime", "torch"],
            description="inference backend; empty: the params file's (auto)",
        ),
        DeclareLaunchArgument(
            "model_dir",
            default_value="",
            description="directory holding the checkpoint; empty: the params file's "
            "(the package's models/default)",
        ),
        DeclareLaunchArgument(
            "use_sim_time",
            default_value="",
            choices=["", "true", "false"],
            description="use /clock; empty: the params file's (false)",
        ),
        DeclareLaunchArgument(
            "rviz",
            default_value="false",
            choices=["true", "false"],
            description="also start RViz with config/pop3d.rviz (skipped with a warning "
            "when rviz2 is not installed)",
        ),
    ]
    return LaunchDescription(args + [OpaqueFunction(function=_node_and_rviz)])
