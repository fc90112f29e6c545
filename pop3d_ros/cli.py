"""The `pop3d` command line: one entry point, subcommands registered by each component.

Subcommand modules are imported only when their command runs, so `pop3d --help` stays
fast and never imports torch or rclpy.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pop3d_ros import __version__

# name -> (module, help). Each module has `main(argv) -> int` (options generated from its
# config dataclasses), or `add_arguments(parser)` and `run(args) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "render": ("pop3d_ros.data.cli_render", "render a synthetic surround-view drive to disk"),
    "show": ("pop3d_ros.viz.cli_show", "render a sample to PNG (camera mosaic, bird's-eye view)"),
    "play": ("pop3d_ros.ros.cli_play", "publish a sequence as six ROS 2 camera topics"),
    "export-bag": ("pop3d_ros.data.cli_bag", "write a sequence as a rosbag2 (MCAP)"),
    "teacher-cache": ("pop3d_ros.teachers.cli", "precompute 2D teacher features"),
    "vfm-labels": ("pop3d_ros.vfm.cli_labels", "cache LiDAR-free VFM pseudo labels"),
    "pretrain2d": ("pop3d_ros.training.cli_pretrain2d", "2D pretraining of the image backbone"),
    "train": ("pop3d_ros.training.cli_train", "train a model from a recipe (config/recipes/)"),
    "eval": ("pop3d_ros.evaluation.cli", "evaluate a checkpoint with the POP-3D protocol"),
    "map": ("pop3d_ros.mapping.cli_map", "build the online map of a drive offline (no ROS)"),
    "eval-map": ("pop3d_ros.evaluation.cli_map", "score the map of drives against the world"),
    "export": ("pop3d_ros.export.cli_export", "export a checkpoint to ONNX + manifest"),
    "calib-frames": ("pop3d_ros.export.cli_calib", "write int8 calibration frames (.npz)"),
    "build-engine": ("pop3d_ros.export.cli_engine", "build a TensorRT engine from the ONNX"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pop3d",
        description="pop3d_ros: open-vocabulary 3D occupancy — data, training, evaluation, export.",
    )
    parser.add_argument("--version", action="version", version=f"pop3d {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # handles --help / --version / unknown command errors
        parser.print_help()
        return 2
    module_name, help_text = COMMANDS[argv[0]]
    module = importlib.import_module(module_name)
    if hasattr(module, "main"):
        return int(module.main(argv[1:]) or 0)
    sub_parser = argparse.ArgumentParser(prog=f"pop3d {argv[0]}", description=help_text)
    module.add_arguments(sub_parser)
    args = sub_parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
