"""Data: the synthetic world, synthetic text space + teacher, sample format, datasets,
the nuScenes reader and rosbag2 export. Never imports rclpy."""
