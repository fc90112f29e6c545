"""Training and evaluation (POP-3D recipe): targets, losses, teachers, loop, DDP, evaluation.

ROS-free; every submodule imports torch lazily through its own imports only.
"""
