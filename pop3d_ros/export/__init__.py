"""Deployment: ONNX export + manifest, inference backends, TensorRT engine builder and cache.

Nothing here imports torch, onnxruntime or tensorrt at package import time; each backend
imports its library when it is created. The ROS node uses `pop3d_ros.export.runtime`.
"""
