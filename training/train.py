"""Train an EFC network: ``python -m training.train --config training/configs/X.yaml``.

Options: ``--output DIR`` (checkpoints, TensorBoard), ``--resume CKPT`` (continue exactly: model,
optimiser, scheduler, AMP scaler, step and data order), ``--set key.sub=value`` (config overrides).
Multi-GPU / multi-process: ``torchrun --nproc_per_node=N -m training.train ...`` (NCCL on CUDA,
gloo on CPU); rank 0 alone logs and writes checkpoints.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from efc_core.losses.composer import compute_losses
from efc_core.model import build_model
from efc_core.model.checkpoint import load_checkpoint, save_checkpoint
from training.config import TrainConfig, load_config, to_dict
from training.loop import (
    initialise_from_checkpoint,
    DistributedContext,
    ResumableSampler,
    build_datasets,
    build_optimizer,
    build_scheduler,
    class_info,
    normalise_images,
    stage_loss_settings,
)


LOG = logging.getLogger(__name__)


class Trainer:
    """One training run; ``run()`` returns a summary (final step, last losses, checkpoint path)."""

    def __init__(self, config: TrainConfig, output_dir: str | Path, resume: str | Path | None = None) -> None:
        self.config = config
        self.output_dir = Path(output_dir)
        self.context = DistributedContext.from_environment(config)
        self.device = self.context.device
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        torch.manual_seed(config.seed)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.model = build_model(
            config.model.preset, config.model.num_classes,
            pretrained_backbone=config.model.pretrained_backbone, **config.model.overrides,
        ).to(self.device)
        self.init_classes: tuple[list[str], list[list[int]]] | None = None
        if config.model.init_checkpoint and resume is None:
            self.init_classes = initialise_from_checkpoint(self.model, config.model.init_checkpoint)
        self.train_set, self.val_set = build_datasets(config)
        self.sampler = ResumableSampler(
            self.train_set, num_replicas=self.context.world_size, rank=self.context.rank,
            shuffle=True, seed=config.seed, drop_last=True,
        )
        self.steps_per_epoch = len(self.sampler) // config.data.batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"data.batch_size={config.data.batch_size} exceeds the {len(self.sampler)} samples per rank"
            )
        self.optimizer = build_optimizer(self.model, config.optimizer)
        self.scheduler = build_scheduler(self.optimizer, config.schedule)
        self.use_amp = config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.step = 0
        self._last_eval: tuple[int, dict[str, Any]] = (-1, {})
        if resume is not None:
            self._restore(resume)
        self.network = self.context.wrap(self.model, config.distributed.find_unused_parameters)
        self.writer = None
        if self.context.is_main and config.logging.tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # rank 0 only: one event file

            self.writer = SummaryWriter(str(self.output_dir / "tensorboard"))

    # ------------------------------------------------------------------ checkpoints
    def _restore(self, path: str | Path) -> None:
        state = load_checkpoint(path, map_location=self.device)
        self.model.load_state_dict(state["model_state"])
        self.optimizer.load_state_dict(state["optimizer_state"])
        self.scheduler.load_state_dict(state["scheduler_state"])
        if state.get("scaler_state"):
            self.scaler.load_state_dict(state["scaler_state"])
        self.step = int(state["step"])
        extra = state.get("extra") or {}
        if "torch_rng_state" in extra:
            torch.set_rng_state(extra["torch_rng_state"].cpu())

    def save(self, name: str, metrics: dict[str, Any] | None = None) -> Path | None:
        """Write ``output_dir/name`` (rank 0 only); returns its path, ``None`` on other ranks."""
        if not self.context.is_main:
            return None
        class_names, palette = class_info(self.config, self.init_classes)
        path = self.output_dir / name
        save_checkpoint(
            path, self.model, train_config=to_dict(self.config), step=self.step,
            metrics=metrics or {}, class_names=class_names, palette=palette,
            optimizer_state=self.optimizer.state_dict(), scheduler_state=self.scheduler.state_dict(),
            scaler_state=self.scaler.state_dict() if self.use_amp else None,
            # Data order is a function of (seed, epoch, step), so the step restores it; the
            # torch RNG covers anything stochastic in the model (dropout).
            extra={"torch_rng_state": torch.get_rng_state(), "world_size": self.context.world_size},
        )
        return path

    # ------------------------------------------------------------------ training
    def _loader(self, epoch: int, start_batch: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        self.sampler.set_start(start_batch * self.config.data.batch_size)
        return DataLoader(
            self.train_set, batch_size=self.config.data.batch_size, sampler=self.sampler,
            num_workers=self.config.data.num_workers, drop_last=True,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
            # Its own generator: a loader drawing worker seeds from the global RNG would shift the
            # dropout masks of a resumed run (which creates its loader at a different step).
            generator=torch.Generator().manual_seed(self.config.seed * 1009 + epoch),
        )

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimisation step on ``batch`` (sample dicts collated, images in [0, 1])."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        weights, loss_config = stage_loss_settings(self.config, self.step)
        supervised = loss_config.supervised_flow
        occlusion_known = loss_config.supervised_occlusion
        self.network.train()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            output = self.network(normalise_images(batch["image1"]), normalise_images(batch["image2"]),
                                  with_flow=_needs_flow(weights, loss_config))
        # Losses in float32 on [0, 1] images (census/SSIM are not fp16-safe).
        losses = compute_losses(
            _to_float(output), batch["image1"], batch["image2"], batch["label1"], batch["label2"],
            weights, loss_config,
            # EFC learns flow without labels: ground truth flow stays out unless asked for.
            flow_gt_fw=batch["flow_fw"] if supervised else None,
            flow_gt_bw=batch["flow_bw"] if supervised else None,
            flow_valid=batch["flow_valid"] if supervised else None,
            flow_valid_bw=batch["flow_valid_bw"] if supervised else None,
            occ_gt_fw=batch["occ_fw"] if occlusion_known else None,
            occ_gt_bw=batch["occ_bw"] if occlusion_known else None,
            occ_known=batch["has_occlusion"] if occlusion_known else None,
        )
        total = losses["total"]
        if not torch.isfinite(total):
            values = {k: float(v) for k, v in losses.items()}
            raise FloatingPointError(f"non-finite loss at step {self.step}: {values}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.config.optimizer.grad_clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optimizer.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    def run(self) -> dict[str, Any]:
        """Train until ``schedule.total_steps``; checkpoint periodically and at the end."""
        config = self.config
        total_steps = config.schedule.total_steps
        if self.context.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        progress = None
        if self.context.is_main and config.logging.progress_bar:
            from tqdm import tqdm

            progress = tqdm(total=total_steps, initial=self.step, desc=config.name, dynamic_ncols=True)
        last: dict[str, float] = {}
        pairs = 0
        started = time.perf_counter()
        while self.step < total_steps:
            epoch, start_batch = divmod(self.step, self.steps_per_epoch)
            for batch in self._loader(epoch, start_batch):
                last = self.train_step(batch)
                pairs += config.data.batch_size * self.context.world_size
                self._log(last, progress)
                if config.logging.checkpoint_every and self.step % config.logging.checkpoint_every == 0:
                    self.save(f"checkpoint_{self.step:07d}.pt")
                if config.logging.eval_every and self.step % config.logging.eval_every == 0:
                    self._evaluate()
                if self.step >= total_steps or self._out_of_time(started):
                    break
            if self._out_of_time(started):
                break
        elapsed = time.perf_counter() - started
        if progress is not None:
            progress.close()
        metrics = {}
        if config.logging.eval_every:
            last_step, last_metrics = self._last_eval
            metrics = last_metrics if last_step == self.step else self._evaluate()
        final = self.save("final.pt", metrics)
        if self.writer is not None:
            self.writer.close()
        self.context.barrier()
        return {
            "step": self.step, "losses": last, "checkpoint": str(final) if final else None,
            "metrics": metrics, "train_seconds": elapsed,
            "pairs_per_second": pairs / elapsed if elapsed > 0 else math.nan,
        }

    def _out_of_time(self, started: float) -> bool:
        limit = self.config.schedule.max_wall_minutes
        return limit is not None and time.perf_counter() - started > 60.0 * limit

    def _log(self, losses: dict[str, float], progress: Any) -> None:
        if progress is not None:
            progress.update(1)
            if self.step % max(self.config.logging.log_every, 1) == 0:
                progress.set_postfix({k: f"{v:.3f}" for k, v in losses.items() if k == "total" or k.startswith("seg")})
        due = self.step % max(self.config.logging.log_every, 1) == 0
        if progress is None and due and self.context.is_main:
            # Without a progress bar (background runs) the log file is the only sign of progress.
            LOG.info("step %d/%d lr %.2e %s", self.step, self.config.schedule.total_steps,
                     self.scheduler.get_last_lr()[0], " ".join(f"{k} {v:.4f}" for k, v in losses.items()))
        if self.writer is not None and due:
            for name, value in losses.items():
                self.writer.add_scalar(f"loss/{name}", value, self.step)
            self.writer.add_scalar("lr", self.scheduler.get_last_lr()[0], self.step)

    def _evaluate(self) -> dict[str, Any]:
        """Held-out metrics on rank 0 (other ranks wait at the next collective)."""
        if not self.context.is_main or self.val_set is None:
            return {}
        from training.evaluate import evaluate_model

        metrics = evaluate_model(self.model, self.val_set, device=self.device,
                                 class_names=class_info(self.config, self.init_classes)[0])
        self._last_eval = (self.step, metrics)
        if self.writer is not None:
            for name in ("miou", "epe", "occlusion_f1", "tc_own_flow"):
                if isinstance(metrics.get(name), (int, float)):
                    self.writer.add_scalar(f"val/{name}", metrics[name], self.step)
        return metrics


def _needs_flow(weights: Any, loss_config: Any) -> bool:
    """Whether any active loss term uses the flow branch (seg-only runs skip it)."""
    flow_terms = (weights.photometric, weights.smoothness, weights.occlusion, weights.temporal)
    return any(w > 0 for w in flow_terms) or (loss_config.supervised_flow and weights.supervised_flow > 0)


def _to_float(output: Any) -> Any:
    """Cast every tensor of an (AMP) model output to float32, keeping its structure."""
    if isinstance(output, torch.Tensor):
        return output.float()
    if isinstance(output, list):
        return [_to_float(v) for v in output]
    if isinstance(output, dict):
        return {k: _to_float(v) for k, v in output.items()}
    if hasattr(output, "__dataclass_fields__"):
        for name in output.__dataclass_fields__:
            setattr(output, name, _to_float(getattr(output, name)))
    return output


def run_training(config: TrainConfig, output_dir: str | Path, resume: str | Path | None = None) -> dict[str, Any]:
    """Train ``config`` into ``output_dir`` (optionally resuming); see :meth:`Trainer.run`."""
    trainer = Trainer(config, output_dir, resume)
    try:
        return trainer.run()
    finally:
        trainer.context.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="training YAML (training/configs/*.yaml)")
    parser.add_argument("--output", default=None, help="output folder (default runs/<name>)")
    parser.add_argument("--resume", default=None, help="checkpoint to continue from")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optimizer.lr=5e-4 (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    config = load_config(args.config, args.overrides)
    output = args.output or str(Path("runs") / config.name)
    summary = run_training(config, output, args.resume)
    if summary["checkpoint"]:
        print(f"final checkpoint: {summary['checkpoint']} (step {summary['step']}, "
              f"{summary['pairs_per_second']:.2f} pairs/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
