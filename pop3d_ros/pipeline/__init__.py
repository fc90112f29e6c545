"""The node's processing pipeline, ROS-free: image decoding, preprocessing, camera-set matching,
sampling-grid cache, inference + queries over the latest occupancy, message field arrays.

`pop3d_ros.ros` converts ROS messages to/from these plain numpy structures and nothing more.
"""
