"""Command-line options of the VFM recipe, shared by `pop3d vfm-labels` and `pop3d train
--strategy vfm`, and the labeler they build."""

from __future__ import annotations

from dataclasses import asdict

from pop3d_ros.vfm.calibrate import CalibrationConfig
from pop3d_ros.vfm.pseudo_labels import PseudoLabelConfig


def add_vfm_arguments(p) -> None:
    c, lab = CalibrationConfig(), PseudoLabelConfig()
    g = p.add_argument_group("VFM pseudo labels (--strategy vfm)")
    g.add_argument("--vfm-cache", help="calibrated depth + pseudo-label cache directory")
    g.add_argument(
        "--depth-source",
        choices=["synthetic", "depth_anything"],
        default="synthetic",
        help="relative depth model (default: %(default)s)",
    )
    g.add_argument("--depth-weights", help="Depth Anything directory (config.json + weights)")
    g.add_argument(
        "--calib-downsample",
        type=int,
        default=c.downsample,
        help="calibrate depth at image size / N (default: %(default)s)",
    )
    g.add_argument(
        "--calib-iterations",
        type=int,
        default=c.iterations,
        help="stage 2 AdamW iterations (paper: 5000; default: %(default)s)",
    )
    g.add_argument(
        "--calib-lr", type=float, default=c.lr, help="stage 2 learning rate (default: %(default)s)"
    )
    g.add_argument(
        "--calib-rig-shifts",
        default=",".join(str(k) for k in c.rig_shifts),
        help="stage 1 + 2 source views also from the target frame's cameras this many steps "
        "around the rig, e.g. --calib-rig-shifts=-1,1 (metric baseline from the extrinsics); "
        "'' = the paper "
        "(default: %(default)r)",
    )
    g.add_argument(
        "--calib-rig-weight",
        type=float,
        default=c.rig_weight,
        help="weight of the rig views' error beside the temporal views' (negative: one "
        "minimum over all views; default: %(default)s)",
    )
    g.add_argument(
        "--label-max-depth",
        type=float,
        default=lab.max_depth,
        help="metres; farther pixels are not back-projected (default: %(default)s)",
    )


def rig_settings(shifts_text, weight, flag: str = "--calib-rig-shifts"):
    """(rig_shifts, rig_weight) of CalibrationConfig from the command-line forms: shifts as
    comma-separated ints ('' = none, the paper), a negative weight = None (one minimum over
    all views)."""
    try:
        shifts = tuple(int(x) for x in str(shifts_text).split(",") if x.strip())
    except ValueError:
        raise ValueError(f"bad {flag} {shifts_text!r}: use e.g. -1,1") from None
    return shifts, None if weight is not None and weight < 0 else weight


def calibration_config(args) -> CalibrationConfig:
    shifts, weight = rig_settings(args.calib_rig_shifts, args.calib_rig_weight)
    cfg = CalibrationConfig(
        downsample=args.calib_downsample,
        iterations=args.calib_iterations,
        lr=args.calib_lr,
        rig_shifts=shifts,
        rig_weight=weight,
    )
    cfg.validate()
    return cfg


def build_labeler(
    args, grid, teacher, text_space: dict, fetch, cache_dir, teacher_meta=None, text_encoder=None
):
    """The `VFMLabeler` the options describe (pixel semantics from `text_space`'s encoder;
    `text_encoder()`, where given, returns that encoder already built)."""
    from pop3d_ros.text.factory import text_encoder_from_spec
    from pop3d_ros.vfm.depth_source import make_depth_source
    from pop3d_ros.vfm.labeler import VFMLabeler
    from pop3d_ros.vfm.semantics import pixel_semantics_from_encoder

    if args.depth_source == "depth_anything" and not args.depth_weights:
        raise ValueError("--depth-source depth_anything needs --depth-weights DIR")
    source = (
        make_depth_source(args.depth_source, weights=args.depth_weights)
        if args.depth_source == "depth_anything"
        else make_depth_source("synthetic")
    )
    encoder = text_encoder() if text_encoder else text_encoder_from_spec(text_space)
    semantics = pixel_semantics_from_encoder(encoder)
    labels = PseudoLabelConfig(max_depth=args.label_max_depth)
    return VFMLabeler(
        teacher,
        semantics,
        source,
        fetch,
        grid,
        cache_dir,
        calibration_config(args),
        labels,
        teacher_meta,
    )


def vfm_settings(args) -> dict:
    """What the prepared frames of `pop3d train --strategy vfm` depend on."""
    return {
        "depth_source": args.depth_source,
        "depth_weights": args.depth_weights,
        "calibration": asdict(calibration_config(args)),
        "label_max_depth": args.label_max_depth,
    }
