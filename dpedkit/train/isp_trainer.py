"""The learned-ISP trainer (``dpedkit train --model pynet|microisp``): one network trained
stage by stage as its recipe says (:mod:`dpedkit.train.recipes`), on RAW-to-RGB patch pairs
streamed from a Zurich RAW-to-RGB layout (:mod:`dpedkit.train.raw_data`).

It offers the shared loop (:mod:`dpedkit.train.loop`) what the DPED
:class:`~dpedkit.train.trainer.Trainer` offers — ``step``, ``evaluate``, ``sample_image``,
``state``/``load``, the loss and metric names — so resuming, signals, checkpoints,
TensorBoard, DDP and the precision/channels_last/compile switches are the same code.

The schedule: stage ``k`` runs ``steps_k`` optimisation steps (the recipe's epochs ×
``len(train) // batch``, or ``--stage-steps``); iteration ``i`` (steps done) is in the first
stage whose cumulative end exceeds it. Entering a stage sets the network's and the data's
level and starts a fresh Adam at the stage's learning rate, as PyNET-PyTorch starts a new
process per level with the previous level's weights.

Batches are reproducible from the iteration alone: step ``j`` of a stage takes batch
``j mod E`` (``E = len(train) // batch``, the last partial batch dropped) of the permutation
drawn for epoch ``j // E`` from a generator seeded by ``(seed, stage, epoch)``. So a resumed
run draws the batches an uninterrupted one draws, without saving a loader's position.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dpedkit.metrics import ms_ssim
from dpedkit.model.device import resolve_device
from dpedkit.train.config import TrainConfig, TrainError, recorded
from dpedkit.train.distributed import Ranks, batch_slice
from dpedkit.train.isp_losses import IspLoss
from dpedkit.train.raw_data import ZrrPatches, pack_bayer, quick_rendering
from dpedkit.train.recipes import Recipe, recipe
from dpedkit.train.trainer import content_network

LOSS_KEYS = IspLoss.TERMS
METRIC_FIELDS = ["iteration", "level", *LOSS_KEYS, "test_psnr", "test_ms_ssim", "seconds"]
# MS-SSIM's five scales need the smallest one to hold its 11 px window
MS_SSIM_MIN_SIDE = 11 * 2 ** 4


def isp_recipe(cfg: TrainConfig) -> Recipe:
    """The recipe ``cfg`` names: ``--recipe``, else the model's published one."""
    r = recipe(cfg.recipe or cfg.model)
    if r.model != cfg.model:
        raise TrainError(f"--recipe {r.name} trains {r.model}, not --model {cfg.model}")
    return r


def set_level(model: nn.Module, dataset: Dataset, level: int) -> None:
    """Make the network output, and the dataset load targets for, ``level`` (MicroISP has level 0 only)."""
    if hasattr(model, "level"):
        model.level = level
    elif level != 0:
        raise ValueError(f"{type(model).__name__} has only the full-resolution level 0, not {level}")
    if hasattr(dataset, "level"):
        dataset.level = level


@torch.no_grad()
def evaluate_isp(model: nn.Module, dataset: Dataset, level: int = 0, device: torch.device | str = "cpu",
                 with_ms_ssim: bool = True) -> dict[str, float]:
    """PSNR and MS-SSIM on the test patches as PyNET-PyTorch's evaluation: batch 1, the raw
    output (not clipped), ``20·log10(1/√MSE)`` per patch, averaged over patches."""
    device = torch.device(device)
    set_level(model, dataset, level)
    model.to(device).eval()
    psnrs, ssims = [], []
    for k in range(len(dataset)):
        raw, dslr = (t[None].to(device) for t in dataset[k])
        out = model(raw).float()
        psnrs.append(20 * math.log10(1 / math.sqrt(max(float(((out - dslr) ** 2).mean()), 1e-12))))
        if with_ms_ssim:
            ssims.append(float(ms_ssim(out, dslr)))
    model.train()
    res = {"psnr": sum(psnrs) / len(psnrs)}
    if with_ms_ssim:
        res["ms_ssim"] = sum(ssims) / len(ssims)
    return res


class StageBatches:
    """The index batches of one stage from its step ``start`` on (module docstring); a
    ``batch_sampler`` for a :class:`~torch.utils.data.DataLoader`."""

    def __init__(self, n: int, batch: int, steps: int, start: int, seed: int, stage: int, part: slice):
        self.n, self.batch, self.steps, self.start = n, batch, steps, start
        self.seed, self.stage, self.part = seed, stage, part
        self.per_epoch = n // batch

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self):
        perm, epoch = None, -1
        for j in range(self.start, self.steps):
            e, b = divmod(j, self.per_epoch)
            if e != epoch:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.stage * 10_007 + e)
                perm, epoch = torch.randperm(self.n, generator=g), e
            yield perm[b * self.batch:(b + 1) * self.batch][self.part].tolist()


def _collate(items):
    return torch.stack([r for r, _ in items]), torch.stack([d for _, d in items])


class IspTrainer:
    """The network, its optimiser, the data and the stage schedule of one learned-ISP run."""
    loss_keys = LOSS_KEYS
    metric_fields = METRIC_FIELDS

    def __init__(self, cfg: TrainConfig, log=print, ranks: Ranks = Ranks(), recipe: Recipe | None = None):
        """``recipe``: another recipe than ``cfg`` names (benchmarks vary the batch sizes)."""
        self.cfg, self.log, self.ranks = cfg, log, ranks
        self.recipe = recipe or isp_recipe(cfg)
        self.device = resolve_device(cfg.device)
        self.cuda = self.device.type == "cuda"
        if self.cuda and ranks.world > 1:
            self.device = torch.device("cuda", ranks.local)
        self.precision = ("bf16" if self.cuda else "fp32") if cfg.precision == "auto" else cfg.precision
        self.channels_last = self.cuda if cfg.channels_last is None else cfg.channels_last
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.train_set = ZrrPatches(cfg.data_dir, "train", raw=cfg.phone, dslr=cfg.dslr, limit=cfg.train_size)
        self.test_set = ZrrPatches(cfg.data_dir, "test", raw=cfg.phone, dslr=cfg.dslr, limit=cfg.eval_patches)
        self.ends = self._stage_ends()
        torch.manual_seed(cfg.seed)
        self.net = self.recipe.build_model().to(self.device, memory_format=self.memory_format)
        needs_vgg = any(s.weights.content > 0 for s in self.recipe.stages)
        self.vgg = content_network(cfg, self.device, log) if needs_vgg else None
        if self.vgg is not None:
            self.vgg.to(memory_format=self.memory_format)
        self.iteration, self.stage = 0, -1
        self._enter(self._stage_at(0))

    # -- the schedule ---------------------------------------------------------------------
    def _stage_ends(self) -> list[int]:
        n, ends, total = len(self.train_set), [], 0
        for s in self.recipe.stages:
            if n < s.batch_size:
                raise TrainError(f"{n} training patches are fewer than the batch size {s.batch_size} of level "
                                 f"{s.level} ({self.recipe.name})")
            try:
                batch_slice(s.batch_size, self.ranks)
            except ValueError as e:
                raise TrainError(f"level {s.level}: {e}") from None
            total += self.cfg.stage_steps or s.num_steps(n)
            ends.append(total)
        return ends

    @property
    def total_iters(self) -> int:
        """Steps of the whole schedule: the run ends there."""
        return self.ends[-1]

    def _stage_at(self, iteration: int) -> int:
        """The stage the next step after ``iteration`` steps belongs to (the last when done)."""
        return next((k for k, end in enumerate(self.ends) if end > iteration), len(self.ends) - 1)

    def stage_ends_at(self, iteration: int) -> bool:
        """Whether ``iteration`` completes a stage (the loop evaluates there)."""
        return iteration in self.ends

    @property
    def level(self) -> int:
        return self.recipe.stages[self.stage].level

    def _enter(self, k: int, optimiser_state: dict | None = None) -> None:
        """Make stage ``k`` current: the level, a fresh Adam (or ``optimiser_state``), the loss,
        the data from the stage's step ``iteration − start of stage``."""
        self.stage = k
        s = self.recipe.stages[k]
        set_level(self.net, self.train_set, s.level)
        self.part = batch_slice(s.batch_size, self.ranks)
        self.batch_size = s.batch_size
        fused = self.cuda if self.cfg.fused_adam is None else self.cfg.fused_adam
        self.opt = torch.optim.Adam(self.net.parameters(), lr=s.lr, fused=fused)
        if optimiser_state is not None:
            self.opt.load_state_dict(optimiser_state)
        weights = s.weights if self.vgg is not None else s.weights.without_content()
        self.loss = IspLoss(weights, self.vgg if weights.content > 0 else None)
        self._wrap()
        start = self.ends[k - 1] if k else 0
        sampler = StageBatches(len(self.train_set), s.batch_size, self.ends[k] - start, self.iteration - start,
                               self.cfg.seed, k, self.part)
        workers = self.cfg.loader_workers if self.cfg.loader_workers is not None else (4 if self.cuda else 0)
        self.batches = iter(DataLoader(self.train_set, batch_sampler=sampler, num_workers=workers,
                                       collate_fn=_collate, pin_memory=self.cuda,
                                       persistent_workers=False))

    def _wrap(self) -> None:
        """What a step runs through: DDP (unused parameters allowed: a coarse level leaves the
        finer layers out), compiled with --compile, or the network itself."""
        self.net_step = self.net
        if self.ranks.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            self.net_step = DDP(self.net, device_ids=[self.device.index] if self.cuda else None,
                                find_unused_parameters=True)
        if self.cfg.compile:
            self.net_step = torch.compile(self.net_step, backend=self.cfg.compile_backend)

    # -- one step -------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def losses(self, raw: torch.Tensor, dslr: torch.Tensor) -> torch.Tensor:
        """The step's forward pass: ``[total, mse, content, 1 − MS-SSIM]``."""
        with self._autocast():
            return self.loss.terms(self.net_step(raw).float(), dslr)

    def step(self) -> torch.Tensor:
        """One optimisation step; returns the losses as a device tensor (no host synchronisation)."""
        k = self._stage_at(self.iteration)
        if k != self.stage:
            self._enter(k)
        raw, dslr = next(self.batches)
        fmt = self.memory_format
        raw = raw.to(self.device, non_blocking=True).contiguous(memory_format=fmt)
        dslr = dslr.to(self.device, non_blocking=True).contiguous(memory_format=fmt)
        losses = self.losses(raw, dslr)
        self.opt.zero_grad(set_to_none=True)
        losses[0].backward()
        self.opt.step()
        self.iteration += 1
        return losses.detach()

    # -- what the loop shows, scores and saves ---------------------------------------------
    def step_memory(self) -> int:
        """Estimated peak bytes of the largest training step still to come (its stages differ)."""
        from dpedkit.train.memory import isp_step_bytes
        return isp_step_bytes(self)

    def memory_terms(self, room: float) -> tuple[str, str]:
        """What :func:`~dpedkit.train.memory.check_memory` says of a step that does not fit
        (a recipe's batch sizes are its own: no smaller batch is offered)."""
        return (f"the largest training step of {self.recipe.name}",
                "train on more processes (--nproc-per-node) or a larger device")

    def describe(self) -> str:
        stages = ", ".join(f"level {s.level} × {self.ends[k] - (self.ends[k - 1] if k else 0)} steps of batch "
                           f"{s.batch_size}" for k, s in enumerate(self.recipe.stages))
        return (f"{self.recipe.name}: {len(self.train_set)} training and {len(self.test_set)} test patches; "
                f"{stages}")

    @staticmethod
    def loss_text(values: list[float]) -> str:
        return f" loss {values[0]:.4g} (MSE {values[1]:.3g})"

    @staticmethod
    def score_text(row: dict) -> str:
        ssim = row.get("test_ms_ssim")
        return (f"level {row['level']}: test PSNR {row['test_psnr']:.2f} dB"
                + (f", MS-SSIM {ssim:.4f}" if isinstance(ssim, float) else ""))

    def best_scope(self, row: dict):
        """Rows whose PSNRs compare: those of the same level."""
        return int(row.get("level", 0))

    def evaluate(self) -> dict:
        """PSNR (and MS-SSIM where the level's patches hold its scales) on the test patches at
        the current level, as PyNET's evaluation computes them."""
        side = min(self.test_set.read_pair(0)[0].shape) >> self.level     # the targets' side at this level
        with self._autocast():
            scores = evaluate_isp(self.net, self.test_set, self.level, self.device,
                                  with_ms_ssim=side >= MS_SSIM_MIN_SIDE)
        set_level(self.net, self.train_set, self.level)
        return {"level": self.level, "test_psnr": scores["psnr"], "test_ms_ssim": scores.get("ms_ssim", "")}

    @torch.no_grad()
    def sample_image(self, n: int = 4) -> np.ndarray:
        """Test patches as rows: quick rendering | the network's output at the current level,
        enlarged to the patch size (nearest) | DSLR."""
        rows = []
        self.net.eval()
        for k in range(min(n, len(self.test_set))):
            mosaic, dslr = self.test_set.read_pair(k)
            raw = torch.from_numpy(pack_bayer(mosaic))[None].to(self.device)
            out = self.net(raw).float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
            f = dslr.shape[0] // out.shape[0]
            out = (np.repeat(np.repeat(out, f, 0), f, 1) * 255 + 0.5).astype(np.uint8)
            quick = quick_rendering(mosaic)
            rows.append(np.concatenate([quick, out[:dslr.shape[0], :dslr.shape[1]], dslr], axis=1))
        self.net.train()
        return np.concatenate(rows, axis=0)

    def _network_record(self) -> dict:
        return {"name": self.recipe.model, "kwargs": dict(self.recipe.model_kwargs), "level": self.level,
                "recipe": self.recipe.name}

    def state(self, **extra) -> dict:
        """The full training state (``extra``: the loop's running sums, time spent)."""
        return {"network": self._network_record(), "generator": self.net.state_dict(), "opt": self.opt.state_dict(),
                "stage": self.stage, "iteration": self.iteration, "torch_rng": torch.get_rng_state(),
                "config": recorded(self.cfg), **extra}

    def generator_state(self, **extra) -> dict:
        """The network's weights only (fp32, CPU): what enhance, evaluate and export need."""
        weights = {k: v.detach().float().cpu().contiguous() for k, v in self.net.state_dict().items()}
        return {"network": self._network_record(), "generator": weights, "iteration": self.iteration,
                "config": recorded(self.cfg), **extra}

    def load(self, path) -> dict:
        """Restore the training state of ``path``; returns the whole checkpoint dict."""
        from dpedkit.model.checkpoint import load_checkpoint
        ck = load_checkpoint(path)
        if "opt" not in ck or "network" not in ck:
            raise TrainError(f"{path} holds no learned-ISP training state to resume from")
        self.net.load_state_dict(ck["generator"])
        self.iteration = int(ck["iteration"])
        torch.set_rng_state(ck["torch_rng"])
        k = self._stage_at(self.iteration)
        # the saved Adam is the saved stage's; a new stage starts a fresh one, as a run going on would
        self._enter(k, ck["opt"] if int(ck["stage"]) == k else None)
        return ck
