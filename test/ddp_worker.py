"""Run by test_train_ddp.py under torchrun: a few DDP steps of the tiny config, then each
rank saves its weights and the frames it trained on."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)

from train_fixtures import tiny_model_config, tiny_sample  # noqa: E402

from pop3d_ros.data.synthetic_teacher import SyntheticTeacher  # noqa: E402
from pop3d_ros.distributed import barrier, cleanup, init_distributed  # noqa: E402
from pop3d_ros.model.pop3d import build_model  # noqa: E402
from pop3d_ros.training.config import TrainConfig  # noqa: E402
from pop3d_ros.training.frames import PreparedFrames, prepare_frames  # noqa: E402
from pop3d_ros.training.loop import train  # noqa: E402
from pop3d_ros.training.strategies.pop3d import Pop3DStrategy  # noqa: E402


class Recording(PreparedFrames):
    seen: list = []

    def __getitem__(self, i):
        self.seen.append(self.keys[i])
        return super().__getitem__(i)


def main(out: Path) -> None:
    info = init_distributed("cpu")
    cfg = tiny_model_config()
    strategy = Pop3DStrategy(SyntheticTeacher())
    if info.is_main:
        prepare_frames(
            [f"f{i}" for i in range(4)],
            lambda k: tiny_sample(int(k[1:])),
            lambda s: strategy.prepare(s, cfg),
            out / "frames",
        )
    barrier(info)
    dataset = Recording(out / "frames")
    torch.manual_seed(100 + info.rank)  # different init per rank: DDP must sync it
    model = build_model(cfg)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    tcfg = TrainConfig(steps=3, lr=1e-2, warmup_steps=1, checkpoint_every=10, log_every=1)
    summary = train(
        model,
        cfg,
        dataset,
        strategy,
        tcfg,
        out / "run",
        info=info,
        text_space={"kind": "synthetic"},
        log=lambda m: None,
    )
    torch.save(
        {
            "state": model.state_dict(),
            "init": init,
            "seen": dataset.seen,
            "history": summary["history"],
            "world_size": info.world_size,
        },
        out / f"rank{info.rank}.pt",
    )
    cleanup(info)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
