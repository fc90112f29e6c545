"""Training core: the loop, its typed config, schedule, DDP, prepared-frame cache, targets,
losses, ray sampling and volume rendering; `strategies/` holds one module per recipe.
Evaluation lives in `pop3d_ros.evaluation`, teachers in `pop3d_ros.teachers`.

ROS-free; every submodule imports torch lazily through its own imports only.
"""
