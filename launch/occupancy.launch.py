"""Launch the pop3d occupancy node (and optionally RViz).

    ros2 launch pop3d_ros occupancy.launch.py [params_file:=...] [backend:=auto|tensorrt|
        onnxruntime|torch] [model_dir:=...] [use_sim_time:=false] [rviz:=false]

Large raw images are lost under Fast DDS's default transports when subscribed best effort;
FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA?sockets_size=8MB is set here unless the user already set
it (see pop3d_ros/ros/dds_env.py for the measurement; camera drivers need it too).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def generate_launch_description():
    share = get_package_share_directory("pop3d_ros")
    default_params = os.path.join(share, "config", "occupancy.yaml")
    default_model_dir = os.path.join(share, "models", "default")
    rviz_config = os.path.join(share, "config", "pop3d.rviz")

    args = [
        DeclareLaunchArgument("params_file", default_value=default_params),
        DeclareLaunchArgument("backend", default_value="auto"),
        DeclareLaunchArgument("model_dir", default_value=default_model_dir),
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("rviz", default_value="false"),
    ]
    actions = []
    if "FASTDDS_BUILTIN_TRANSPORTS" not in os.environ:
        actions.append(
            SetEnvironmentVariable("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA?sockets_size=8MB")
        )

    node = Node(
        package="pop3d_ros",
        executable="occupancy_node",
        name="pop3d_occupancy",
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "backend": LaunchConfiguration("backend"),
                "model_dir": LaunchConfiguration("model_dir"),
                "use_sim_time": ParameterValue(
                    LaunchConfiguration("use_sim_time"), value_type=bool
                ),
            },
        ],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", rviz_config],
        parameters=[
            {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}
        ],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription(args + actions + [node, rviz])
