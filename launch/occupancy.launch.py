"""Launch the pop3d occupancy node (and optionally RViz).

    ros2 launch pop3d_ros occupancy.launch.py [params_file:=...] [backend:=auto|tensorrt|
        onnxruntime|torch] [model_dir:=...] [use_sim_time:=true|false] [rviz:=true|false]
        [namespace:=/robot1] [lifecycle:=true|false] [autostart:=true|false]
        [mapping:=true|false] [map_frame:=...] [map_file:=...]

`namespace` moves every topic and the service (`/robot1/cam_front/image_raw`,
`/robot1/pop3d/occupancy_cloud`, `/robot1/query_text`; `/diagnostics` stays). The shipped
params file is keyed `/**/pop3d_occupancy`, so it applies in any namespace; launch_ros writes
the argument overrides keyed by the node's fully qualified name.

`lifecycle:=true` starts the managed node (`occupancy_node --lifecycle`, unconfigured);
`autostart:=true` (the default) then drives it to active: configure, and activate once it
is inactive. With `autostart:=false` a lifecycle manager (Nav2's, README) or `ros2 lifecycle
set` drives it.

Parameter precedence: the node's declared defaults < `params_file` < the launch arguments
`backend`, `model_dir`, `use_sim_time`, `mapping`, `map_frame`, `map_file` given explicitly on
the command line. Those arguments
default to "" (not given), so a user's params file is never overridden by a launch default.

No DDS transport setting is made here: a node whose transports differ from a
default-configured process exchanges nothing with it (ros2 CLI, RViz, camera drivers). Faster
settings for large images are a system-wide choice (README, "DDS settings for six large
image streams").
"""

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from launch import LaunchDescription

# override params_file when given
NODE_ARGUMENTS = ("backend", "model_dir", "use_sim_time", "mapping", "map_frame", "map_file")
BOOL_ARGUMENTS = ("use_sim_time", "mapping")


def _node_and_rviz(context):
    share = get_package_share_directory("pop3d_ros")
    value = {name: LaunchConfiguration(name).perform(context) for name in NODE_ARGUMENTS}
    overrides = {name: v for name, v in value.items() if v != ""}
    for name in BOOL_ARGUMENTS:
        if name in overrides:
            overrides[name] = overrides[name].lower() == "true"
    params_file = LaunchConfiguration("params_file").perform(context) or (
        share + "/config/occupancy.yaml"
    )
    namespace = LaunchConfiguration("namespace").perform(context)
    lifecycle = LaunchConfiguration("lifecycle").perform(context).lower() == "true"
    autostart = LaunchConfiguration("autostart").perform(context).lower() == "true"
    # launch_ros applies parameter entries in order, a later entry overriding an earlier one.
    node_kwargs = dict(
        package="pop3d_ros",
        executable="occupancy_node",
        name="pop3d_occupancy",
        namespace=namespace,
        output="screen",
        parameters=[params_file, overrides] if overrides else [params_file],
    )
    if not lifecycle:
        actions = [Node(**node_kwargs)]
    else:
        node = LifecycleNode(arguments=["--lifecycle"], **node_kwargs)
        actions = [node]
        if autostart:
            # configure now; activate when the node reports inactive (after configure).
            actions += [
                RegisterEventHandler(
                    OnStateTransition(
                        target_lifecycle_node=node,
                        start_state="configuring",
                        goal_state="inactive",
                        entities=[_change_state(node, Transition.TRANSITION_ACTIVATE)],
                    )
                ),
                _change_state(node, Transition.TRANSITION_CONFIGURE),
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


def _change_state(node, transition_id: int) -> EmitEvent:
    return EmitEvent(
        event=ChangeState(
            lifecycle_node_matcher=lambda action: action is node, transition_id=transition_id
        )
    )


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
            "mapping",
            default_value="",
            choices=["", "true", "false"],
            description="online map (query_map, pop3d/map_cloud, pop3d/costmap); empty: the "
            "params file's (false)",
        ),
        DeclareLaunchArgument(
            "map_frame",
            default_value="",
            description="frame of the map; odometry must be in it; empty: the params file's (map)",
        ),
        DeclareLaunchArgument(
            "map_file",
            default_value="",
            description="map (.npz) loaded at start where it exists, written by pop3d/save_map; "
            "empty: the params file's",
        ),
        DeclareLaunchArgument(
            "namespace",
            default_value="",
            description="ROS namespace of the node, its topics and its service; empty: root",
        ),
        DeclareLaunchArgument(
            "lifecycle",
            default_value="false",
            choices=["true", "false"],
            description="start the managed (lifecycle) node instead of the plain one",
        ),
        DeclareLaunchArgument(
            "autostart",
            default_value="true",
            choices=["true", "false"],
            description="lifecycle:=true only: configure and activate the node at start",
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
