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

Faults, and what the loop does about them (docs/reliability.md lists them with their tests):
- RUN_DIR already holds a run and neither ``resume`` nor ``overwrite`` is set: ``RunExists``, before anything is
  written; ``overwrite`` deletes the old run's files (``RUN_FILES``) first.
- SIGINT / SIGTERM: the iteration in hand finishes, ``last.pt`` is written and ``TrainingInterrupted`` raised.
- An image that cannot be opened, or whose size differs from the json's: found up front (headers only), all of
  them reported at once, before training starts. One that still fails to decode mid-run is left out of its batch,
  named in a warning and counted in metrics.jsonl (``skipped_images``); a batch left empty skips its step.
- An evaluation that fails: ``last.pt`` was written before it started; the failure is printed and recorded in
  metrics.jsonl (``eval_error``) and training goes on. Evaluation leaves the RNG as it found it, so a resumed run
  stays exact whether or not evaluations ran.
- A non-finite loss: ``NonFiniteLoss``, keeping the last good checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from maskrcnn.checkpoint import (
    StartingWeights,
    apply_starting_weights,
    load_checkpoint,
    load_state_into,
    read_starting_weights,
    save_checkpoint,
)
from maskrcnn.config import PRESETS, Config, InputConfig, ModelConfig, dump_yaml, replace_backbone, replace_model
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.loader import build_train_loader
from maskrcnn.data.transforms import Compose, RandomHorizontalFlip, ResizeShortestEdge
from maskrcnn.engine import distributed
from maskrcnn.engine.interrupt import StopSignals, signal_name
from maskrcnn.engine.schedule import lr_factor
from maskrcnn.errors import ArgumentError, UserError
from maskrcnn.io import atomic_open
from maskrcnn.model.build import build_model
from maskrcnn.model.mask_rcnn import MaskRCNN
from maskrcnn.predict import Predictor, resolve_device

log = logging.getLogger(__name__)

RUN_FILES = ("last.pt", "best.pt", "config.yaml", "metrics.jsonl", "loss_curve.png")  # what a run writes


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
    overwrite: bool = False  # replace a run already in output_dir (its RUN_FILES are deleted)
    device: str = "cpu"
    progress: bool = True
    # config keys the user chose (``config.given_keys``): the data may not silently change them
    given_keys: frozenset[str] = frozenset()


# the fields that decide which weights a model has and what they compute (not how it is trained)
_ARCHITECTURE = {
    "backbone": ("depth", "groups", "width_per_group", "stride_in_1x1", "stem_width", "fpn_channels", "fpn_norm"),
    "rpn": ("head_convs",),
    "roi_heads": ("box_head_convs", "box_conv_dim", "fc_dim", "num_fc", "head_norm", "mask_conv_dim", "num_mask_convs"),
}


def _architecture(model: ModelConfig) -> tuple:
    return tuple(getattr(getattr(model, part), f) for part, fields in _ARCHITECTURE.items() for f in fields)


def _fits(model: ModelConfig, needed: ModelConfig) -> bool:
    """Whether ``model`` builds the network ``needed`` describes and normalises pixels alike."""
    return _architecture(model) == _architecture(needed) and (
        (model.input.pixel_mean, model.input.pixel_std) == (needed.input.pixel_mean, needed.input.pixel_std)
    )


def _matching_preset(needed: ModelConfig) -> str:
    """The name of the preset whose model ``needed`` fits, for messages ("" if none)."""
    return next((name for name, make in PRESETS.items() if _fits(make().model, needed)), "")


def train(job: TrainJob) -> dict[str, Any]:
    """Run a training job; returns {"iteration", "run_dir", "eval" (last validation metrics or None), "eval_error"
    (why the last evaluation failed, or None), "skipped_images" (how many times an image failed to decode and was
    left out), "is_main" (False in the processes other than rank 0, which should stay quiet)}.

    Raises ``UserError`` for bad input (``RunExists`` for an output folder holding a run), ``TrainingInterrupted``
    after SIGINT / SIGTERM (with ``last.pt`` written), ``NonFiniteLoss``."""
    device = resolve_device(job.device)
    dist = distributed.init_from_env(device.type)
    try:
        return _Trainer(job, device, dist).run()
    finally:
        distributed.shutdown(dist)


def resume_checkpoint(output_dir: Path) -> Path:
    """``output_dir/last.pt``, the checkpoint a resumed run continues; ``ArgumentError`` (``resume``) when there is
    none."""
    path = Path(output_dir) / "last.pt"
    if not path.is_file():
        raise ArgumentError("resume", f"{{arg}}: there is no checkpoint to resume from at {path}")
    return path


def train_transform(config: Config) -> Compose:
    inp = config.model.input
    return Compose(
        [ResizeShortestEdge(inp.min_size_train, inp.max_size_train, rule=inp.resize), RandomHorizontalFlip(inp.flip_prob)]
    )


class NonFiniteLoss(UserError):
    pass


class RunExists(UserError):
    """The output folder holds another run's files (``found``), and the job neither resumes nor overwrites it."""

    def __init__(self, run_dir: Path, found: list[str]):
        super().__init__(f"{run_dir} already holds a training run ({', '.join(found)})")
        self.run_dir, self.found = run_dir, found


class TrainingInterrupted(Exception):
    """A signal stopped the run; ``checkpoint`` holds its first ``iteration`` iterations."""

    def __init__(self, *, signum: int, iteration: int, checkpoint: Path):
        super().__init__(f"stopped by {signal_name(signum)} after iteration {iteration}; saved {checkpoint}")
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint


class _Trainer:
    def __init__(self, job: TrainJob, device: torch.device, dist: distributed.DistInfo):
        if dist.enabled and device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
        self.job, self.device, self.dist = job, device, dist
        self.out = job.output_dir
        self.last_path, self.best_path = self.out / "last.pt", self.out / "best.pt"
        self.metrics_path = self.out / "metrics.jsonl"
        self._check_run_dir(job)
        resumed = None
        if job.resume:
            resumed = load_checkpoint(resume_checkpoint(self.out))
        start = read_starting_weights(job.init_weights) if resumed is None and job.init_weights else None

        solver = job.config.solver
        torch.manual_seed(solver.seed + dist.rank)
        self.train_set = CocoDataset(job.train_json, job.images_dir, transform=train_transform(job.config))
        if len(self.train_set) == 0:
            raise UserError(f"{job.train_json} has no images to train on")
        self.class_names, self.category_ids = self.train_set.class_names, self.train_set.category_ids
        if not self.class_names:
            raise UserError(f"{job.train_json} has no annotated categories to learn")
        self.val_set, self.val_truth = None, None
        if job.val_json is not None:  # fail on a bad validation set now, not after hours of training
            from maskrcnn.evaluation.coco_eval import load_ground_truth

            try:
                self.val_set = CocoDataset(job.val_json, job.val_images_dir, category_ids=self.category_ids)
            except ArgumentError as e:  # the validation set's arguments are named val_*
                raise ArgumentError(f"val_{e.argument}", e.message) from None
            self.val_truth = load_ground_truth(job.val_json)
        self._check_images()
        self.config = self._effective_config(job, resumed, start)
        if self.config.model.input != job.config.model.input:  # training images are resized as the weights need
            self.train_set.transform = train_transform(self.config)

        self.amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[solver.amp]
        if self.amp_dtype is not None and device.type != "cuda":
            self._print(f"note: solver.amp={solver.amp} needs CUDA; training in float32 on {device}")
            self.amp_dtype = None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)

        self.model: MaskRCNN = build_model(self.config.model).to(device)
        self.optimizer = torch.optim.SGD(
            _param_groups(self.model, solver.weight_decay), lr=solver.base_lr, momentum=solver.momentum
        )
        self.start_iter = 0
        self._saved_iteration = -1  # iteration of the checkpoint on disk (-1: none written by this run)
        self.best: dict[str, Any] = {}
        self.eval_error: str | None = None  # why the latest evaluation failed
        self.skipped_images = 0  # images left out of their batch because they failed to decode
        if resumed is not None:
            self._restore(resumed)
        elif start is not None:
            apply_starting_weights(
                self.model, start.kind, start.state, num_classes=len(self.class_names), path=job.init_weights
            )
            self._print(f"starting from {start.kind} weights {job.init_weights}")

        self.ddp_model: torch.nn.Module = self.model
        if dist.enabled:
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.base_lr = solver.base_lr * (solver.batch_size * dist.world_size / 16 if solver.lr_scaling else 1.0)

    def _check_run_dir(self, job: TrainJob) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"output is not a folder: {self.out}")
        if job.resume and job.overwrite:
            raise UserError("a run is either resumed or overwritten, not both")
        found = [name for name in RUN_FILES if (self.out / name).exists()]
        if found and not job.resume and not job.overwrite:
            raise RunExists(self.out, found)

    def _check_images(self) -> None:
        """Every image of the training and validation sets, by its header: all the bad ones in one report."""
        progress = self.job.progress and self.dist.is_main and sys.stderr.isatty()
        bad = self.train_set.unreadable_images(progress=progress)
        total = len(self.train_set)
        if self.val_set is not None:
            bad += self.val_set.unreadable_images(progress=progress)
            total += len(self.val_set)
        if bad:
            for line in bad:
                self._print(f"bad image: {line}")
            sets = f"{self.job.train_json}" + (f" and {self.job.val_json}" if self.val_set is not None else "")
            raise UserError(
                f"{len(bad)} of the {total} images of {sets} cannot be used (listed above; first: {bad[0]}); "
                "fix or remove them, then start again"
            )

    def _effective_config(self, job: TrainJob, resumed: Any, start: StartingWeights | None) -> Config:
        """The config this run really uses: the data's class count, and the backbone the starting point needs."""
        start_kind = start.kind if start else None
        num_classes = len(self.class_names)
        if job.config.model.num_classes != num_classes:
            chosen = f"model.num_classes={job.config.model.num_classes}"
            data = f"{job.train_json} has {num_classes} classes ({', '.join(self.class_names[:5])}" + (
                ", ...)" if num_classes > 5 else ")"
            )
            if "model.num_classes" in job.given_keys:
                raise UserError(f"{chosen}, but {data}; leave model.num_classes out to train on the data's classes")
            self._print(f"note: {chosen} of the config is replaced by {num_classes}: {data}")
        config = replace_model(job.config, num_classes=num_classes)
        if resumed is not None:
            # The architecture must be the saved one; the solver may change (e.g. a longer schedule).
            # (a change of classes is reported by _restore, naming them)
            if replace_model(config, num_classes=resumed.config.model.num_classes).model != resumed.config.model:
                raise ArgumentError(
                    "config", f"cannot resume {self.last_path} with a different model config ({{arg}}): its model "
                    "settings must be the saved ones"
                )
            return config
        backbone = config.model.backbone
        if start is not None and start.model_config is not None:
            return self._config_for_weights(config, start.model_config)
        if start_kind in ("torchvision", "imagenet"):
            self._check_torchvision_conventions(config.model)
        if start_kind == "torchvision":  # its frozen BatchNorm statistics were trained with eps 0
            if backbone.frozen_bn_eps != 0.0:
                self._print(f"note: model.backbone.frozen_bn_eps={backbone.frozen_bn_eps} is replaced by 0, the value "
                            "torchvision's weights were trained with")
            return replace_backbone(config, frozen_bn_eps=0.0)
        if start_kind is None and (backbone.norm == "frozen_bn" or backbone.freeze_at > 0):
            # From scratch, frozen statistics would be the identity and frozen stages random: train them all.
            self._print("note: training from scratch, so the backbone uses trainable BatchNorm and no frozen stages "
                        "(model.backbone.norm=bn, model.backbone.freeze_at=0)")
            return replace_backbone(config, norm="bn" if backbone.norm == "frozen_bn" else backbone.norm, freeze_at=0)
        return config

    def _config_for_weights(self, config: Config, needed: ModelConfig) -> Config:
        """Weights that fix their architecture and input conventions (detectron2's, torchvision's v2): the given
        model config when it builds the same network and normalises pixels alike (the matching preset, with any
        training overrides such as freeze_at or norm), else theirs."""
        model = config.model
        if _fits(model, needed):
            return config
        hint = _matching_preset(needed)
        given = sorted(k for k in self.job.given_keys if k.startswith("model.") and k != "model.num_classes")
        if given:  # replacing the model config would silently drop what the user chose
            raise UserError(
                f"{self.job.init_weights} needs another model config than the one given (the preset {hint or '?'}: "
                f"its backbone, pixel normalisation and heads), which would drop your {', '.join(given)}; "
                f"give them with --config {hint or '<that preset>'}"
            )
        self._print(f"note: the model config is replaced by the one {self.job.init_weights} needs (the preset "
                    f"{hint or 'of its source'}: its backbone, input and heads; --config {hint or '...'} takes "
                    "overrides of it)")
        return replace_model(replace(config, model=needed), num_classes=model.num_classes)

    def _check_torchvision_conventions(self, model: ModelConfig) -> None:
        """torchvision's Mask R-CNN and ImageNet ResNets have the stride in the 3x3 convolution, no groups, and
        expect ImageNet's pixel mean and std: UserError naming the fields of ``model`` that differ."""
        plain, backbone = InputConfig(), model.backbone
        wrong = [
            f"model.backbone.{name}={getattr(backbone, name)}"
            for name, value in (("stride_in_1x1", False), ("groups", 1), ("width_per_group", 64))
            if getattr(backbone, name) != value
        ]
        wrong += [
            f"model.input.{name}={list(getattr(model.input, name))}"
            for name in ("pixel_mean", "pixel_std")
            if getattr(model.input, name) != getattr(plain, name)
        ]
        if wrong:
            raise UserError(
                f"{self.job.init_weights} holds torchvision weights (stride in the 3x3 convolution, ImageNet pixel "
                f"mean and std), which {', '.join(wrong)} do not fit: use --config r50_fpn or r101_fpn"
            )

    # ---- the loop ---------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        solver = self.config.solver
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.job.overwrite:
                for name in RUN_FILES:
                    (self.out / name).unlink(missing_ok=True)
            for stale in self.out.glob(".*.tmp"):  # temp files of a write that was killed
                stale.unlink(missing_ok=True)
            with atomic_open(self.out / "config.yaml", "w") as f:
                f.write(dump_yaml(self.config))
            self._truncate_metrics(self.start_iter)
        if self.start_iter >= solver.max_iter:
            self._print(f"already trained to iteration {self.start_iter} (solver.max_iter = {solver.max_iter})")
            return self._summary(self.start_iter, self.best.get("metrics"))
        with StopSignals() as stop:
            last_eval = self._loop(stop)
        if self.dist.is_main:
            self._plot_losses()
        distributed.barrier(self.dist)
        return self._summary(solver.max_iter, last_eval)

    def _loop(self, stop: StopSignals) -> dict[str, Any] | None:
        """Iterations ``start_iter`` .. ``max_iter``, with logging, checkpoints and evaluations -> the last metrics."""
        from tqdm import tqdm

        solver = self.config.solver
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
        window: list[dict[str, float]] = []  # the losses of the steps since the last log record
        skipped = 0  # images left out since the last log record
        tic = time.perf_counter()
        data_time = 0.0
        logged = self.start_iter
        try:
            for iteration in range(self.start_iter, solver.max_iter):
                t0 = time.perf_counter()
                try:
                    images, targets, unreadable = next(data_iter)
                except Exception:
                    if stop.signum is None:
                        raise
                    images, targets, unreadable = [], [], []  # the signal reached the loader's workers as well
                data_time += time.perf_counter() - t0
                halt, empty = distributed.any_process([stop.signum is not None, not images], self.dist, self.device)
                if halt:  # every process stops before the same iteration, with the state of the ones before
                    self._stop(iteration, stop.signum or signal.SIGTERM)
                for message in unreadable:  # each process names its own
                    print(f"warning: iteration {iteration + 1}: skipped an image: {message}", file=sys.stderr, flush=True)
                skipped += len(unreadable)
                self.skipped_images += len(unreadable)
                if not empty:  # a batch that lost all its images (in any process) skips its step
                    window.append(self._step(iteration, images, targets))
                done = iteration + 1

                if done % solver.log_period == 0 or done == solver.max_iter:
                    elapsed = time.perf_counter() - tic
                    record = self._log(done, window, elapsed / (done - logged), data_time / (done - logged), skipped)
                    if "loss" in record:
                        bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2g}")
                        if not tty and self.job.progress and self.dist.is_main:
                            eta = (solver.max_iter - done) * record["time"]
                            self._print(f"iter {done}/{solver.max_iter}  loss {record['loss']:.4f}  "
                                        f"lr {record['lr']:.3g}  {record['time']:.2f} s/it  eta {_duration(eta)}")
                    window, skipped, data_time, tic, logged = [], 0, 0.0, time.perf_counter(), done
                bar.update(1)

                evaluate_now = self.val_set is not None and (
                    done == solver.max_iter or (solver.eval_period and done % solver.eval_period == 0)
                )
                if done % solver.checkpoint_period == 0 or done == solver.max_iter or evaluate_now:
                    self._save_last(done)  # before evaluating: an evaluation that fails or is killed loses nothing
                if evaluate_now:
                    last_eval = self._evaluate(done, final=done == solver.max_iter)
        finally:
            bar.close()
            # The loader's workers ignore SIGINT and SIGTERM (data/loader.py): end them here, not at interpreter exit,
            # where multiprocessing would try SIGTERM and wait for them.
            shutdown = getattr(data_iter, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
        return last_eval

    def _stop(self, iteration: int, signum: int) -> None:
        """Save the first ``iteration`` iterations (unless on disk already) and raise ``TrainingInterrupted``."""
        if self._saved_iteration != iteration:
            self._save_last(iteration)
        if self.dist.is_main:
            self._plot_losses()
        raise TrainingInterrupted(signum=signum, iteration=iteration, checkpoint=self.last_path)

    def _summary(self, iteration: int, metrics: dict | None) -> dict[str, Any]:
        """See ``train``."""
        return {"iteration": iteration, "run_dir": str(self.out), "eval": metrics, "is_main": self.dist.is_main,
                "eval_error": self.eval_error, "skipped_images": self.skipped_images}  # fmt: skip

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
                if self._saved_iteration >= 0
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

    def _log(
        self, iteration: int, window: list[dict[str, float]], sec_per_iter: float, data_time: float, skipped: int
    ) -> dict:
        record: dict[str, Any] = {"iteration": iteration}
        if window:  # empty when every step since the last record was skipped
            keys = window[-1].keys()
            record.update({k: window[-1][k] if k == "lr" else sum(w[k] for w in window) / len(window) for k in keys})
        record["time"] = round(sec_per_iter, 4)
        record["data_time"] = round(data_time, 4)
        if skipped:
            record["skipped_images"] = skipped
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

    def _evaluate(self, iteration: int, *, final: bool) -> dict[str, Any] | None:
        """COCO AP on the validation set (rank 0); keeps best.pt. Returns the metrics, or None when the evaluation
        failed: that is reported and recorded, and training goes on."""
        metrics = None
        if self.dist.is_main:
            self.eval_error = None
            try:
                # Evaluation draws nothing from the RNG a resumed run restores, whether or not it ran.
                with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                    metrics, improved = self._score(iteration)
                if improved:
                    self._write_last(iteration)  # last.pt was written before this evaluation: give it the new best
            except Exception as e:  # noqa: BLE001 - an evaluation must never cost the training done so far
                reason = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
                self.eval_error = f"evaluation at iteration {iteration} failed: {reason}"
                self._append_metrics({"iteration": iteration, "eval_error": reason})
                then = f"the weights are saved in {self.last_path}" if final else "training goes on"
                self._print(f"warning: {self.eval_error}; {then}")
            finally:
                self.model.train()
        distributed.barrier(self.dist)
        return metrics

    def _score(self, iteration: int) -> tuple[dict[str, Any], bool]:
        """Predict and score the validation set -> (metrics, whether they beat the best so far and made best.pt)."""
        from maskrcnn.evaluation.coco_eval import evaluate_coco
        from maskrcnn.evaluation.inference import predict_coco_results

        predictor = Predictor(
            self.model,
            config=self.config,
            class_names=self.class_names,
            category_ids=self.category_ids,
            device=self.device,
        )
        results = predict_coco_results(predictor, self.val_set, progress=False)
        metrics = evaluate_coco(self.val_truth, results).metrics
        self._append_metrics({"iteration": iteration, "eval": metrics})
        summary = "  ".join(f"{t} AP {m['AP']:.1f} AP50 {m['AP50']:.1f}" for t, m in metrics.items())
        self._print(f"eval at iteration {iteration}: {summary}")
        score = _headline_ap(metrics)
        improved = not self.best or score > self.best["score"]
        if improved:
            self.best = {"score": score, "iteration": iteration, "metrics": metrics}
            self._write(self.best_path, {"iteration": iteration, "metrics": metrics})
        return metrics, improved

    def _save_last(self, iteration: int) -> None:
        if self.dist.is_main:
            self._write_last(iteration)
        self._saved_iteration = iteration
        distributed.barrier(self.dist)

    def _write_last(self, iteration: int) -> None:
        self._write(self.last_path, {
            "iteration": iteration,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": _rng_state(),
            "best": self.best,
        })  # fmt: skip

    def _write(self, path: Path, extra: dict[str, Any]) -> None:
        save_checkpoint(path, model=self.model, config=self.config, class_names=self.class_names,
                        category_ids=self.category_ids, extra=extra)  # fmt: skip

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
