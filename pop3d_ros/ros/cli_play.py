"""`pop3d play`: publish a rendered or on-the-fly synthetic drive, or a recorded rosbag2 MCAP
directory (`--bag`, e.g. from `pop3d export-bag`), as six camera topics and /odom."""

from __future__ import annotations

import itertools
import sys


def add_arguments(parser) -> None:
    parser.add_argument("--bag", default=None, help="rosbag2 MCAP directory to play at its "
                        "recorded timing x --speed (--loop, --sample-stamps apply; the other "
                        "options describe synthetic drives)")  # fmt: skip
    parser.add_argument("--speed", type=float, default=1.0, help="--bag: playback speed factor")
    parser.add_argument("--data", default=None, help="rendered dir (pop3d render); default: "
                        "render the drive first, on the fly")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="synthetic drive seed")
    parser.add_argument("--frames", type=int, default=20, help="frames of the drive")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=144)
    parser.add_argument("--rate", type=float, default=2.0, help="camera sets per second")
    parser.add_argument("--loop", action="store_true", help="repeat the drive until Ctrl-C")
    parser.add_argument("--compressed", action="store_true", help="publish image_raw/compressed")
    parser.add_argument("--best-effort", action="store_true", help="best-effort QoS")
    parser.add_argument("--sample-stamps", action="store_true",
                        help="stamp with the samples' timestamps instead of now")  # fmt: skip
    parser.add_argument("--jitter", type=float, default=0.0, help="per-camera stamp jitter, s")
    parser.add_argument("--drop", nargs="*", default=[], help="cameras never published")
    parser.add_argument("--drop-prob", type=float, default=0.0, help="chance to skip an image")
    parser.add_argument("--odom-topic", default="odom", help="nav_msgs/Odometry of the ego "
                        "poses, before each camera set (relative: --namespace moves it; '' = "
                        "none)")  # fmt: skip
    parser.add_argument("--namespace", default="", help="ROS namespace of the camera topics "
                        "(e.g. /robot1: /robot1/cam_front/image_raw, ...)")  # fmt: skip
    parser.add_argument("--ack-timeout", type=float, default=0.1, help="reliable: after each "
                        "image wait up to this long (s) for every subscriber's ack; 0 = don't "
                        "(see PlaybackConfig.ack_timeout_s)")  # fmt: skip


def load_samples(data, seed, frames, width, height) -> list[dict]:
    from tqdm import tqdm

    if data:
        from pop3d_ros.data.dataset import SyntheticDataset

        ds = SyntheticDataset([seed], root=data)
        return [ds[i] for i in tqdm(range(min(frames, len(ds))), desc="load", unit="frame")]
    from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig

    world = SyntheticWorld(WorldConfig(seed=seed, num_frames=frames, image_width=width,
                                       image_height=height))  # fmt: skip
    return [world.sample(i, occupancy=False) for i in tqdm(range(frames), desc="render")]


def play_bag(args) -> int:
    from pop3d_ros.ros.bag_play import BagPlayer, bag_files

    try:
        bag_files(args.bag)
        if args.speed <= 0:
            raise ValueError("--speed must be > 0")
    except (ValueError, FileNotFoundError) as exc:
        print(f"pop3d play: error: {exc}", file=sys.stderr)
        return 2

    def play(player):
        while True:
            player.play(args.bag)
            if not args.loop:
                return player.published

    return _publish(
        lambda node: BagPlayer(node, rate=args.speed, restamp=not args.sample_stamps),
        play,
        lambda player: f"{player.published} messages",
        args.namespace,
    )


def _publish(make_player, play, progress, namespace: str = "") -> int:
    """`play(make_player(node))` on a fresh rclpy node: one-line errors (exit 2), Ctrl-C
    reports how far it got, the node and context are always shut down."""
    import rclpy

    rclpy.init()
    try:
        node = rclpy.create_node("pop3d_play", namespace=namespace)
    except Exception as exc:  # noqa: BLE001 - rclpy's invalid-namespace errors differ by release
        print(f"pop3d play: error: --namespace {namespace!r}: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    player = None
    try:
        player = make_player(node)
        play(player)
        print(f"published {progress(player)}")
    except ValueError as exc:
        print(f"pop3d play: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if player is not None:
            print(f"stopped after {progress(player)}")
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def run(args) -> int:
    if args.bag:
        return play_bag(args)
    try:
        from pop3d_ros.ros.playback import CameraPlayback, PlaybackConfig

        config = PlaybackConfig(
            rate_hz=args.rate, compressed=args.compressed,
            reliability="best_effort" if args.best_effort else "reliable",
            restamp=not args.sample_stamps, jitter_s=args.jitter,
            drop_cameras=tuple(args.drop), drop_prob=args.drop_prob,
            ack_timeout_s=args.ack_timeout, odom_topic=args.odom_topic,
        )  # fmt: skip
        if args.frames < 1:
            raise ValueError("--frames must be >= 1")
        samples = load_samples(args.data, args.seed, args.frames, args.width, args.height)
    except (ValueError, FileNotFoundError) as exc:
        print(f"pop3d play: error: {exc}", file=sys.stderr)
        return 2
    return _publish(
        lambda node: CameraPlayback(node, config),
        lambda player: player.play(itertools.cycle(samples) if args.loop else samples),
        lambda player: f"{player.frames_published} camera sets",
        args.namespace,
    )
