"""``torchrun --nproc_per_node=2`` on the CPU (gloo): ranks stay in sync, only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "training" / "configs" / "ci_tiny.yaml"

# Each rank trains in its own output folder and dumps a checksum of its parameters, so the test
# sees both what each rank holds and what each rank wrote.
WORKER = textwrap.dedent(
    """
    import hashlib, json, os, sys
    import torch
    from training.config import load_config
    from training.train import Trainer

    base, overrides = sys.argv[1], sys.argv[2:]
    rank = int(os.environ["RANK"])
    trainer = Trainer(load_config(sys.argv[0].replace("worker.py", "config.yaml"), overrides),
                      os.path.join(base, f"rank{rank}"))
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.run()
    digest = hashlib.sha256()
    for name, tensor in sorted(trainer.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    moved = any(not torch.equal(initial[k], v) for k, v in trainer.model.state_dict().items())
    with open(os.path.join(base, f"checksum{rank}.json"), "w") as out:
        json.dump({"sha256": digest.hexdigest(), "moved": moved, "step": summary["step"],
                   "world_size": trainer.context.world_size, "backend": torch.distributed.get_backend()}, out)
    trainer.context.close()
    """
)

OVERRIDES = [
    "num_threads=1", "device=cpu", "data.batch_size=1", "data.synthetic.height=64", "data.synthetic.width=64",
    "data.synthetic.num_frames=3", "data.synthetic.train_sequences=2", "data.synthetic.pairs_per_sequence=2",
    "data.synthetic.val_sequences=0", "schedule.total_steps=2", "schedule.warmup_steps=1",
    "schedule.stage2_start_step=1", "logging.checkpoint_every=1", "logging.tensorboard=true",
    "logging.progress_bar=true",
]


@pytest.mark.slow
def test_two_cpu_ranks_stay_in_sync_and_only_rank0_writes(tmp_path: Path) -> None:
    (tmp_path / "worker.py").write_text(WORKER, encoding="utf-8")
    (tmp_path / "config.yaml").write_text(CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(tmp_path / "worker.py"), str(tmp_path), *OVERRIDES,
    ]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    ranks = [json.loads((tmp_path / f"checksum{rank}.json").read_text()) for rank in (0, 1)]
    assert all(r["world_size"] == 2 and r["backend"] == "gloo" and r["step"] == 2 for r in ranks)
    assert all(r["moved"] for r in ranks), "training did not change the parameters"
    # Different data shards per rank, one model: gradients were averaged across ranks.
    assert ranks[0]["sha256"] == ranks[1]["sha256"]

    written0 = sorted(p.name for p in (tmp_path / "rank0").iterdir())
    assert {"checkpoint_0000001.pt", "checkpoint_0000002.pt", "final.pt", "tensorboard"} <= set(written0)
    rank1 = tmp_path / "rank1"
    assert not rank1.exists() or not any(rank1.rglob("*")), f"rank 1 wrote {list(rank1.rglob('*'))}"
