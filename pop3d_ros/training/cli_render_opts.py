"""`pop3d train` options of the rendering strategies (`render`, `pop3d_render`)."""

from __future__ import annotations

# The option defaults, so a run of another strategy can tell which of them were set.
RENDER_DEFAULTS = {
    "aux_rays": False,
    "weighted_sampling": False,
    "num_rays": 2048,
    "ray_pool": 2048,
    "density_threshold": None,
    "render_distortion": 0.01,
    "render_termination": 0.0,
    "render_sparsity": 0.0,
    "render_sparsity_scope": "grid",
    "render_density_sampling": "trilinear",
    "render_semantic_weight": 0.0,
}


def refuse_render_arguments(args, strategy: str) -> None:
    """Rendering options change nothing outside `render` / `pop3d_render`; a run of another
    strategy that sets them is refused rather than silently trained without them."""
    if strategy in ("render", "pop3d_render"):
        return
    given = [k for k, d in RENDER_DEFAULTS.items() if getattr(args, k, d) != d]
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ValueError(f"{flags}: rendering options; --strategy {strategy} does not render")


def add_render_arguments(p) -> None:
    g = p.add_argument_group("rendering supervision (--strategy render / pop3d_render)")
    g.add_argument(
        "--aux-rays",
        action="store_true",
        help="add rays from the adjacent frames (-1, +1) via the ego poses",
    )
    g.add_argument(
        "--weighted-sampling",
        action="store_true",
        help="RenderOcc's weighted ray sampling: draw --num-rays per frame by weight "
        "(else every candidate ray is rendered)",
    )
    g.add_argument(
        "--num-rays",
        type=int,
        default=RENDER_DEFAULTS["num_rays"],
        help="rays per frame per step with --weighted-sampling (default: %(default)s)",
    )
    g.add_argument(
        "--ray-pool",
        type=int,
        default=RENDER_DEFAULTS["ray_pool"],
        help="candidate rays cached per frame and per adjacent frame (default: %(default)s)",
    )
    g.add_argument(
        "--density-threshold",
        type=float,
        default=RENDER_DEFAULTS["density_threshold"],
        help="density above which a voxel is occupied (model config; default: "
        "the preset's heads.density_threshold)",
    )
    g.add_argument(
        "--render-distortion",
        type=float,
        default=RENDER_DEFAULTS["render_distortion"],
        help="weight of the distortion loss (Mip-NeRF 360), which gathers each ray's "
        "weights where it stops instead of a haze (default %(default)s, RenderOcc's)",
    )
    g.add_argument(
        "--render-termination",
        type=float,
        default=RENDER_DEFAULTS["render_termination"],
        help="weight of the ray-termination loss: -log of the rendering weight in the voxel "
        "of the ray's LiDAR return (DS-NeRF's depth loss on the grid's cells; default 0 = "
        "RenderOcc as published)",
    )
    g.add_argument(
        "--render-sparsity",
        type=float,
        default=RENDER_DEFAULTS["render_sparsity"],
        help="weight of the free-space prior: mean voxel opacity over the grid, so voxels "
        "no ray reaches default to empty (default 0 = RenderOcc as published)",
    )
    g.add_argument(
        "--render-sparsity-scope",
        choices=["grid", "unseen"],
        default=RENDER_DEFAULTS["render_sparsity_scope"],
        help="where --render-sparsity applies: every voxel, or only the voxels no candidate "
        "ray of the frame (current and adjacent) crosses or ends in (default: %(default)s)",
    )
    g.add_argument(
        "--render-density-sampling",
        choices=["trilinear", "nearest"],
        default=RENDER_DEFAULTS["render_density_sampling"],
        help="how rays read the density grid: trilinear between voxel centres (RenderOcc) or "
        "constant per voxel, the boxes occupancy is scored on (default: %(default)s)",
    )
    g.add_argument(
        "--render-semantic-weight",
        type=float,
        default=RENDER_DEFAULTS["render_semantic_weight"],
        help="weight of the optional 2D semantic loss on the rendered features "
        "(needs 2D class maps: synthetic `semantic`; default 0 = label-free)",
    )


def render_strategy(args, cfg, model_cfg, teacher, text_encoder, make_sample, common):
    """The RenderStrategy of these arguments (`text_encoder()`: the run's text encoder);
    switches the model to a density field."""
    from pop3d_ros.data.sources import key_of_token, neighbour_lookup
    from pop3d_ros.evaluation.zeroshot import (
        ZeroShotClassifier,
        class_canonical_embeddings,
        class_phrase_embeddings,
    )
    from pop3d_ros.training.strategies.render import RenderStrategy

    if args.render_sparsity_scope != RENDER_DEFAULTS["render_sparsity_scope"] and not (
        args.render_sparsity > 0
    ):
        raise ValueError("--render-sparsity-scope needs --render-sparsity > 0")
    model_cfg.heads.occupancy_output = "density"
    if args.density_threshold is not None:
        model_cfg.heads.density_threshold = float(args.density_threshold)
    encoder = text_encoder()
    strategy = RenderStrategy(
        teacher,
        ZeroShotClassifier(class_phrase_embeddings(encoder)),
        neighbour=neighbour_lookup(make_sample, key_of_token(args.data)),
        aux=args.aux_rays,
        weighted=args.weighted_sampling,
        num_rays=args.num_rays,
        ray_pool=args.ray_pool,
        distortion_weight=args.render_distortion,
        termination_weight=args.render_termination,
        sparsity_weight=args.render_sparsity,
        sparsity_scope=args.render_sparsity_scope,
        grid=model_cfg.voxel_grid,
        density_sampling=args.render_density_sampling,
        semantic_weight=args.render_semantic_weight,
        class_embeddings=class_canonical_embeddings(encoder)
        if args.render_semantic_weight > 0
        else None,
        with_occupancy=cfg.strategy == "pop3d_render",
        **common,
    )
    # What the prepared cache holds (aux and weighting act per step, so they share it).
    strategy.cache_settings = {"ray_pool": args.ray_pool, "aux_offsets": list(strategy.aux_offsets)}
    return strategy
