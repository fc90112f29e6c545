"""The ROS 2 layer (imports rclpy): the occupancy node, message conversions, diagnostics,
playback. Everything else lives in the ROS-free core."""
