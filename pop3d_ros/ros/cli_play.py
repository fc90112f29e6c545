"""`pop3d play`: publish a rendered or on-the-fly synthetic drive, or a recorded rosbag2 MCAP
directory (`--bag`, e.g. from `pop3d export-bag`), as six camera topics and /odom. Options come
from `PlayCommand`: `--world.*` (WorldConfig) and `--playback.*` (PlaybackConfig), each field
also by its bare name where unique (`--num_frames 2 --rate_hz 5 --no_restamp`)."""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, field

from tqdm import tqdm

from pop3d_ros.cli_config import run_command
from pop3d_ros.data.synthetic.config import WorldConfig
from pop3d_ros.ros.playback import PlaybackConfig


def _play_world() -> WorldConfig:
    return WorldConfig(num_frames=20)


@dataclass
class PlayCommand:
    """Publishes a synthetic drive (a rendered dir, --data, or rendered on the fly from
    --world.*) or a recorded rosbag2 MCAP directory (--bag) as six camera topics
    (image_raw or image_raw/compressed + camera_info), paced by --playback.rate_hz."""

    # rosbag2 MCAP directory to play at its recorded timing x --speed (--loop and
    # --playback.restamp apply; --world.* and the other --playback.* describe synthetic drives)
    bag: str = ""
    speed: float = 1.0  # --bag: playback speed factor
    data: str = ""  # rendered dir (pop3d render); "" = render the drive first, on the fly
    loop: bool = False  # repeat the drive until Ctrl-C
    # ROS namespace of the topics (e.g. /robot1: /robot1/cam_front/image_raw, ...)
    namespace: str = ""
    world: WorldConfig = field(default_factory=_play_world)
    playback: PlaybackConfig = field(default_factory=PlaybackConfig)


def main(argv=None) -> int:
    argv = sys.argv[2:] if argv is None else argv
    return run_command(PlayCommand, argv, "pop3d play", run)


def play_bag(args: PlayCommand) -> int:
    from pop3d_ros.ros.bag_play import BagPlayer, bag_files

    bag_files(args.bag)  # a missing or unreadable bag is an error before any node starts
    if args.speed <= 0:
        raise ValueError("--speed must be > 0")

    def play(player):
        while True:
            player.play(args.bag)
            if not args.loop:
                return player.published

    return _publish(
        lambda node: BagPlayer(node, rate=args.speed, restamp=args.playback.restamp),
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


def run(args: PlayCommand) -> int:
    if args.bag:
        return play_bag(args)
    from pop3d_ros.data.sources import drive_samples
    from pop3d_ros.ros.playback import CameraPlayback

    samples = list(tqdm(drive_samples(args.data, args.world), desc="render",
                        total=args.world.num_frames, unit="frame"))  # fmt: skip
    return _publish(
        lambda node: CameraPlayback(node, args.playback),
        lambda player: player.play(itertools.cycle(samples) if args.loop else samples),
        lambda player: f"{player.frames_published} camera sets",
        args.namespace,
    )
