"""The training loop: a plain loop over iterations, with checkpoints that resume exactly.

RUN_DIR holds what a run writes (rank 0 only):
    config.yaml      the full config used
    metrics.jsonl    one JSON line per logged iteration ({"iteration", "lr", "loss", "loss_*", "time", ...}) and
                     per evaluation ({"iteration", "eval": {"bbox": {...}, "segm": {...}}})
    last.pt          the latest checkpoint: weights, optimizer, RNG state, iteration (what --resume reads)
    best.pt          the weights with the best validation AP (mask AP, else box AP), when --val is given
    loss_curve.png   the training losses

Resuming restores model, optimizer, RNG and iteration; the data stream is a pure function of (seed, iteration)
(see data/loader.py), so a run killed at any moment and resumed ends with the same weights as one never stopped
(on the CPU, where kernels are deterministic).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from maskrcnn.checkpoint import (
    apply_starting_weights,
    load_checkpoint,
    load_state_into,
    read_starting_weights,
    save_checkpoint,
)
from maskrcnn.config import Config, dump_yaml, replace_backbone, replace_model
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.loader import build_train_loader
from maskrcnn.data.transforms import Compose, RandomHorizontalFlip, ResizeShortestEdge
from maskrcnn.engine import distributed
from maskrcnn.engine.schedule import lr_factor
from maskrcnn.errors import UserError
from maskrcnn.io import atomic_open
from maskrcnn.model.build import build_model
from maskrcnn.model.mask_rcnn import MaskRCNN
from maskrcnn.predict import Predictor, predict_coco_results, resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainJob:
    config: Config
    train_json: Path
    output_dir: Path
    val_json: Path | None = None
    images_dir: Path | None = None
    val_images_dir: Path | None = None
    init_weights: Path | None = None  # our checkpoint, a torchvision Mask R-CNN, or an ImageNet ResNet file
    resume: bool = False
    device: str = "cpu"
    progress: bool = True


def train(job: TrainJob) -> dict[str, Any]:
    """Run a training job; returns {"iteration", "run_dir", "eval" (last validation metrics or None), "is_main"
    (False in the processes other than rank 0, which should stay quiet)}."""
    device = resolve_device(job.device)
    dist = distributed.init_from_env(device.type)
    try:
        return _Trainer(job, device, dist).run()
    finally:
        distributed.shutdown(dist)


def train_transform(config: Config) -> Compose:
    inp = config.model.input
    return Compose(
        [ResizeShortestEdge(inp.min_size_train, inp.max_size_train, rule=inp.resize), RandomHorizontalFlip(inp.flip_prob)]
    )


class NonFiniteLoss(UserError):
    pass


class _Trainer:
    def __init__(self, job: TrainJob, device: torch.device, dist: distributed.DistInfo):
        if dist.enabled and device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
        self.job, self.device, self.dist = job, device, dist
        self.out = job.output_dir
        self.last_path, self.best_path = self.out / "last.pt", self.out / "best.pt"
        self.metrics_path = self.out / "metrics.jsonl"
        resumed = None
        if job.resume:
            if not self.last_path.is_file():
                raise UserError(f"--resume: there is no checkpoint to resume from at {self.last_path}")
            resumed = load_checkpoint(self.last_path)
        start = read_starting_weights(job.init_weights) if resumed is None and job.init_weights else None

        solver = job.config.solver
        torch.manual_seed(solver.seed + dist.rank)
        self.train_set = CocoDataset(job.train_json, job.images_dir, transform=train_transform(job.config))
        if len(self.train_set) == 0:
            raise UserError(f"{job.train_json} has no images to train on")
        self.class_names, self.category_ids = self.train_set.class_names, self.train_set.category_ids
        if not self.class_names:
            raise UserError(f"{job.train_json} has no annotated categories to learn")
        self.val_set = None
        if job.val_json is not None:  # fail on a bad validation set now, not after hours of training
            self.val_set = CocoDataset(job.val_json, job.val_images_dir, category_ids=self.category_ids)
        self.config = self._effective_config(job, resumed, start[0] if start else None)

        self.amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}.get(solver.amp, "bad")
        if self.amp_dtype == "bad":
            raise UserError(f"solver.amp must be none, bf16 or fp16, got {solver.amp!r}")
        if self.amp_dtype is not None and device.type != "cuda":
            self._print(f"note: solver.amp={solver.amp} needs CUDA; training in float32 on {device}")
            self.amp_dtype = None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)

        self.model: MaskRCNN = build_model(self.config.model).to(device)
        self.optimizer = torch.optim.SGD(
            _param_groups(self.model, solver.weight_decay), lr=solver.base_lr, momentum=solver.momentum
        )
        self.start_iter = 0
        self._saved_iteration = 0  # iteration of the checkpoint on disk
        self.best: dict[str, Any] = {}
        if resumed is not None:
            self._restore(resumed)
        elif start is not None:
            kind, state = start
            apply_starting_weights(self.model, kind, state, num_classes=len(self.class_names), path=job.init_weights)
            self._print(f"starting from {kind} weights {job.init_weights}")

        self.ddp_model: torch.nn.Module = self.model
        if dist.enabled:
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.base_lr = solver.base_lr * (solver.batch_size * dist.world_size / 16 if solver.lr_scaling else 1.0)

    def _effective_config(self, job: TrainJob, resumed: Any, start_kind: str | None) -> Config:
        """The config this run really uses: the data's class count, and the backbone the starting point needs."""
        config = replace_model(job.config, num_classes=len(self.class_names))
        if resumed is not None:
            # The architecture must be the saved one; the solver may change (e.g. a longer schedule).
            # (a change of classes is reported by _restore, naming them)
            if replace_model(config, num_classes=resumed.config.model.num_classes).model != resumed.config.model:
                raise UserError(
                    f"cannot resume {self.last_path} with a different model config; leave out --config to "
                    "continue with the saved one"
                )
            return config
        backbone = config.model.backbone
        if start_kind == "torchvision":  # its frozen BatchNorm statistics were trained with eps 0
            return replace_backbone(config, frozen_bn_eps=0.0)
        if start_kind is None and (backbone.norm == "frozen_bn" or backbone.freeze_at > 0):
            # From scratch, frozen statistics would be the identity and frozen stages random: train them all.
            self._print("note: training from scratch, so the backbone uses trainable BatchNorm and no frozen stages "
                        "(model.backbone.norm=bn, model.backbone.freeze_at=0)")
            return replace_backbone(config, norm="bn" if backbone.norm == "frozen_bn" else backbone.norm, freeze_at=0)
        return config

    # ---- the loop ---------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from tqdm import tqdm

        solver = self.config.solver
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            for stale in self.out.glob(".*.tmp"):  # temp files of a write that was killed
                stale.unlink(missing_ok=True)
            with atomic_open(self.out / "config.yaml", "w") as f:
                f.write(dump_yaml(self.config))
            self._truncate_metrics(self.start_iter)
        if self.start_iter >= solver.max_iter:
            self._print(f"already trained to iteration {self.start_iter} (solver.max_iter = {solver.max_iter})")
            return self._summary(self.start_iter, self.best.get("metrics"))

        loader = build_train_loader(
            self.train_set,
            aspect_ratios=self.train_set.aspect_ratios(),
            batch_size=solver.batch_size,
            seed=solver.seed,
            num_workers=solver.num_workers,
            start_iter=self.start_iter,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        tty = sys.stderr.isatty()
        bar = tqdm(
            total=solver.max_iter,
            initial=self.start_iter,
            desc="train",
            unit="it",
            disable=not (self.dist.is_main and self.job.progress and tty),
            dynamic_ncols=True,
        )
        self.model.train()
        data_iter = iter(loader)
        last_eval = self.best.get("metrics")
        window: list[dict[str, float]] = []
        tic = time.perf_counter()
        data_time = 0.0
        for iteration in range(self.start_iter, solver.max_iter):
            t0 = time.perf_counter()
            images, targets = next(data_iter)
            data_time += time.perf_counter() - t0
            loss_values = self._step(iteration, images, targets)
            window.append(loss_values)
            done = iteration + 1

            if done % solver.log_period == 0 or done == solver.max_iter:
                elapsed = time.perf_counter() - tic
                record = self._log(done, window, elapsed / len(window), data_time / len(window))
                bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2g}")
                if not tty and self.job.progress and self.dist.is_main:
                    eta = (solver.max_iter - done) * elapsed / len(window)
                    self._print(f"iter {done}/{solver.max_iter}  loss {record['loss']:.4f}  lr {record['lr']:.3g}  "
                                f"{elapsed / len(window):.2f} s/it  eta {_duration(eta)}")
                window, data_time, tic = [], 0.0, time.perf_counter()
            bar.update(1)

            evaluate_now = self.val_set is not None and (
                done == solver.max_iter or (solver.eval_period and done % solver.eval_period == 0)
            )
            if evaluate_now:
                last_eval = self._evaluate(done)
            if done % solver.checkpoint_period == 0 or done == solver.max_iter or evaluate_now:
                self._save_last(done)
        bar.close()
        if self.dist.is_main:
            self._plot_losses()
        distributed.barrier(self.dist)
        return self._summary(solver.max_iter, last_eval)

    def _summary(self, iteration: int, metrics: dict | None) -> dict[str, Any]:
        return {"iteration": iteration, "run_dir": str(self.out), "eval": metrics, "is_main": self.dist.is_main}

    def _step(self, iteration: int, images: list[Tensor], targets: list[dict]) -> dict[str, float]:
        solver = self.config.solver
        lr = self.base_lr * lr_factor(
            iteration,
            max_iter=solver.max_iter,
            schedule=solver.schedule,
            steps=solver.steps,
            gamma=solver.gamma,
            warmup_iters=solver.warmup_iters,
            warmup_factor=solver.warmup_factor,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images = [im.to(self.device, non_blocking=True) for im in images]
        targets = [{k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in t.items()} for t in targets]
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            loss_dict = self.ddp_model(images, targets)
        losses = sum(loss_dict.values())
        detached = torch.stack([v.detach().float() for v in loss_dict.values()])
        reduced = distributed.all_reduce_mean(detached, self.dist)
        if not torch.isfinite(reduced).all():
            bad = [k for k, v in zip(loss_dict, reduced.tolist()) if not math.isfinite(v)]
            kept = (
                f"the last good checkpoint {self.last_path} (iteration {self._saved_iteration}) is kept"
                if self._saved_iteration
                else "no checkpoint had been written yet"
            )
            if self.dist.is_main:
                self._plot_losses()
            raise NonFiniteLoss(
                f"training stopped: the loss became non-finite at iteration {iteration + 1} ({', '.join(bad)}); "
                f"{kept}. Try a lower solver.base_lr or solver.clip_grad_norm=10."
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses).backward()
        if solver.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), solver.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        values = dict(zip(loss_dict, reduced.tolist()))
        values["loss"] = sum(values.values())
        values["lr"] = lr
        return values

    # ---- records ----------------------------------------------------------------------------------------------

    def _log(self, iteration: int, window: list[dict[str, float]], sec_per_iter: float, data_time: float) -> dict:
        keys = window[-1].keys()
        record: dict[str, Any] = {"iteration": iteration}
        record.update({k: window[-1][k] if k == "lr" else sum(w[k] for w in window) / len(window) for k in keys})
        record["time"] = round(sec_per_iter, 4)
        record["data_time"] = round(data_time, 4)
        if self.device.type == "cuda":
            record["max_mem_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20)
        if self.dist.is_main:
            self._append_metrics(record)
        return record

    def _append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _truncate_metrics(self, iteration: int) -> None:
        """Drop records past ``iteration`` (written after the checkpoint a resumed run starts from)."""
        if not self.metrics_path.exists():
            return
        lines = self.metrics_path.read_text(encoding="utf-8").splitlines()
        kept = []
        for line in lines:
            try:
                if json.loads(line)["iteration"] <= iteration:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill
        with atomic_open(self.metrics_path, "w") as f:
            f.write("".join(line + "\n" for line in kept))

    def _plot_losses(self) -> None:
        from maskrcnn.engine.plots import plot_loss_curve

        if self.metrics_path.exists():
            plot_loss_curve(self.metrics_path, self.out / "loss_curve.png")

    def _print(self, message: str) -> None:
        if self.dist.is_main:
            print(message, file=sys.stderr, flush=True)

    # ---- evaluation and checkpoints ---------------------------------------------------------------------------

    def _evaluate(self, iteration: int) -> dict[str, Any] | None:
        """COCO AP on the validation set (rank 0); keeps best.pt. Returns the metrics."""
        metrics = None
        if self.dist.is_main:
            from maskrcnn.evaluation.coco_eval import evaluate_coco

            predictor = Predictor(
                self.model,
                config=self.config,
                class_names=self.class_names,
                category_ids=self.category_ids,
                device=self.device,
            )
            results = predict_coco_results(
                predictor, self.job.val_json, images_dir=self.job.val_images_dir, progress=False
            )
            evaluation = evaluate_coco(self.job.val_json, results)
            metrics = evaluation.metrics
            self._append_metrics({"iteration": iteration, "eval": metrics})
            summary = "  ".join(f"{t} AP {m['AP']:.1f} AP50 {m['AP50']:.1f}" for t, m in metrics.items())
            self._print(f"eval at iteration {iteration}: {summary}")
            score = _headline_ap(metrics)
            if not self.best or score > self.best["score"]:
                self.best = {"score": score, "iteration": iteration, "metrics": metrics}
                save_checkpoint(
                    self.best_path,
                    model=self.model,
                    config=self.config,
                    class_names=self.class_names,
                    category_ids=self.category_ids,
                    extra={"iteration": iteration, "metrics": metrics},
                )
        self.model.train()
        distributed.barrier(self.dist)
        return metrics

    def _save_last(self, iteration: int) -> None:
        if self.dist.is_main:
            save_checkpoint(
                self.last_path,
                model=self.model,
                config=self.config,
                class_names=self.class_names,
                category_ids=self.category_ids,
                extra={
                    "iteration": iteration,
                    "optimizer": self.optimizer.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "rng": _rng_state(),
                    "best": self.best,
                },
            )
        self._saved_iteration = iteration
        distributed.barrier(self.dist)

    def _restore(self, ckpt) -> None:
        if ckpt.class_names != self.class_names or ckpt.category_ids != self.category_ids:
            raise UserError(
                f"cannot resume: {self.last_path} was trained on classes {ckpt.class_names}, "
                f"but {self.job.train_json} has {self.class_names}"
            )
        missing = [k for k in ("iteration", "optimizer", "rng") if k not in ckpt.extra]
        if missing:
            raise UserError(f"cannot resume from {self.last_path}: it has no training state ({', '.join(missing)})")
        load_state_into(self.model, ckpt.state_dict, path=self.last_path)
        self.optimizer.load_state_dict(ckpt.extra["optimizer"])
        if ckpt.extra.get("scaler"):
            self.scaler.load_state_dict(ckpt.extra["scaler"])
        _set_rng_state(ckpt.extra["rng"], self.dist.rank)
        self.start_iter = int(ckpt.extra["iteration"])
        self._saved_iteration = self.start_iter
        self.best = ckpt.extra.get("best") or {}
        self._print(f"resuming from {self.last_path} at iteration {self.start_iter}")


def _headline_ap(metrics: dict[str, dict[str, float | None]]) -> float:
    for iou_type in ("segm", "bbox"):
        if iou_type in metrics and metrics[iou_type].get("AP") is not None:
            return float(metrics[iou_type]["AP"])
    return 0.0


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on convolution and linear weights only, not on biases or normalisation parameters."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_norm = isinstance(module, (torch.nn.BatchNorm2d, torch.nn.GroupNorm))
            (no_decay if name == "bias" or is_norm else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], rank: int) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
