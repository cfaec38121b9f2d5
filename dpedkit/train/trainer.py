"""The DPED trainer: the networks, both optimisers, the data, the random streams, and one
iteration (a generator step and a discriminator step).

Images are float NCHW in [0, 1] on the trainer's device; patches are stored uint8 (the
whole training set on the GPU when training on CUDA, so a batch is an index, no host copy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dpedkit.layout import dataset_root
from dpedkit.metrics import score_patches
from dpedkit.model.device import resolve_device
from dpedkit.model.networks import Discriminator, Generator, near_identity, to_gray
from dpedkit.train.config import TrainConfig, TrainError, recorded
from dpedkit.train.data import load_split
from dpedkit.train.distributed import Ranks, batch_slice
from dpedkit.train.losses import (color_loss, content_loss, discriminator_accuracy, discriminator_loss,
                                  dped_blur_kernel, tv_loss)

METRIC_FIELDS = ["iteration", "loss_generator", "loss_content", "loss_color", "loss_texture", "loss_tv",
                 "loss_discriminator", "disc_accuracy", "test_psnr", "test_ssim", "test_ms_ssim", "seconds"]
LOSS_KEYS = METRIC_FIELDS[1:8]    # the order of :meth:`Trainer.step`'s losses


class Trainer:
    """Holds the networks, optimisers, data and random streams of one run.

    Every switch but the device is the same code on a CPU and on CUDA: autocast on
    ``device.type`` (``precision``), channels_last, fused Adam and ``torch.compile``
    (inductor) all run on a CPU, so tests exercise them.

    What the shared loop (:mod:`dpedkit.train.loop`) asks of a trainer, which the learned-ISP
    :class:`~dpedkit.train.isp_trainer.IspTrainer` offers too: ``iteration``,
    ``total_iters``, ``step()``, ``stage_ends_at(i)``, ``evaluate()``, ``sample_image()``,
    ``state()``/``generator_state()``/``load()``, ``loss_keys``,
    ``metric_fields``, ``describe()``, ``loss_text()``, ``score_text()``, ``best_scope()``.
    """
    loss_keys = LOSS_KEYS
    metric_fields = METRIC_FIELDS

    def __init__(self, cfg: TrainConfig, log=print, ranks: Ranks = Ranks()):
        self.cfg, self.log, self.ranks = cfg, log, ranks
        self._choose_device()
        try:
            self.part = batch_slice(cfg.batch_size, ranks)
        except ValueError as e:
            raise TrainError(str(e)) from None
        self.out = Path(cfg.out)
        torch.manual_seed(cfg.seed)
        self._load_data()
        self.G = Generator()
        if cfg.start == "identity":
            near_identity(self.G)
        self.G = self.G.to(self.device)
        self.D = Discriminator(self.train_phone.shape[-1]).to(self.device)
        self.vgg = content_network(cfg, self.device, log)
        for m in (self.G, self.D, self.vgg):
            if m is not None:
                m.to(memory_format=self.memory_format)
        fused = self.cuda if cfg.fused_adam is None else cfg.fused_adam
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, fused=fused)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, fused=fused)
        self.kernel = torch.from_numpy(dped_blur_kernel()).to(self.device)
        self._wrap_networks()
        self.rng = torch.Generator().manual_seed(cfg.seed)   # batches and discriminator swaps
        self.iteration = 0

    # -- construction -------------------------------------------------------------------
    def _choose_device(self) -> None:
        cfg = self.cfg
        self.device = resolve_device(cfg.device)
        self.cuda = self.device.type == "cuda"
        if self.cuda and self.ranks.world > 1:
            self.device = torch.device("cuda", self.ranks.local)
        self.precision = ("bf16" if self.cuda else "fp32") if cfg.precision == "auto" else cfg.precision
        self.channels_last = self.cuda if cfg.channels_last is None else cfg.channels_last
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format

    def _load_data(self) -> None:
        cfg = self.cfg
        root = dataset_root(cfg.data_dir, cfg.phone)
        self.train_phone, self.train_dslr = load_split(root, cfg.phone, cfg.dslr, "train", cfg.train_size, size=None)
        self.test_phone, self.test_dslr = load_split(root, cfg.phone, cfg.dslr, "test", cfg.eval_patches, size=None)
        if self.cuda:  # the whole set on the GPU: sampling a batch is an index, no host copy
            self.train_phone, self.train_dslr = self.train_phone.to(self.device), self.train_dslr.to(self.device)

    def _wrap_networks(self) -> None:
        """What the steps run through: DDP wrappers that average gradients over the processes
        (the discriminator step's D), or the networks themselves; compiled with --compile.
        The generator step's D is the plain one: its gradients from that step are discarded."""
        self.G_step, self.D_step, self.D_judge = self.G, self.D, self.D
        if self.ranks.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [self.device.index] if self.cuda else None
            self.G_step, self.D_step = DDP(self.G, device_ids=ids), DDP(self.D, device_ids=ids)
        if self.cfg.compile:
            compiled = lambda m: torch.compile(m, backend=self.cfg.compile_backend)  # noqa: E731
            self.G_step, self.D_step = compiled(self.G_step), compiled(self.D_step)
            self.D_judge = self.D_step if self.ranks.world == 1 else compiled(self.D)

    # -- one iteration ------------------------------------------------------------------
    def _batch(self, swaps: bool):
        """A random training batch ``(phone, dslr, adv)``, as the original draws it.

        ``adv`` (B×1) says, per sample, whether the discriminator is shown the DSLR patch (1)
        or the enhanced one (0). The original feeds the generator step ``all_zeros``
        (``swaps=False``: the texture loss pushes every enhanced patch towards "DSLR") and
        draws random swaps only for the discriminator step.
        """
        n = self.train_phone.shape[0]
        # the global batch, the same in every process; each trains on its own slice
        idx = torch.randint(n, (self.cfg.batch_size,), generator=self.rng)[self.part]
        if swaps:
            adv = torch.randint(0, 2, (self.cfg.batch_size, 1), generator=self.rng).float()[self.part]
        else:
            adv = torch.zeros(self.cfg.batch_size, 1)[self.part]
        idx, adv = idx.to(self.device, non_blocking=True), adv.to(self.device, non_blocking=True)
        fmt = self.memory_format
        phone = (self.train_phone[idx].to(self.device, non_blocking=True).float() / 255).contiguous(memory_format=fmt)
        dslr = (self.train_dslr[idx].to(self.device, non_blocking=True).float() / 255).contiguous(memory_format=fmt)
        return phone, dslr, adv

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _discriminator_loss(self, prob, adv):
        # a sum over the batch, as in the original: each process scales its slice's sum so that
        # DDP's mean of the gradients is the gradient of the whole batch's sum
        return discriminator_loss(prob, adv) * self.ranks.world

    def g_losses(self, phone, dslr, adv) -> torch.Tensor:
        """The generator step's forward pass: ``[loss, content, colour, texture, TV]``."""
        c = self.cfg
        with self._autocast():
            enhanced = self.G_step(phone)
            mixed = to_gray(enhanced) * (1 - adv[:, :, None, None]) + to_gray(dslr) * adv[:, :, None, None]
            # not detached: the texture loss must reach the generator
            prob = self.D_judge(mixed)
            loss_texture = -self._discriminator_loss(prob, adv)
            loss_color = color_loss(enhanced.float(), dslr, self.kernel)
            loss_tv = tv_loss(enhanced.float())
            loss_content = (content_loss(self.vgg(enhanced), self.vgg(dslr)).float() if self.vgg is not None
                            else torch.zeros((), device=phone.device))
        loss = c.w_content * loss_content + c.w_texture * loss_texture + c.w_color * loss_color + c.w_tv * loss_tv
        return torch.stack([loss, loss_content, loss_color, loss_texture, loss_tv])

    def g_step(self, phone, dslr, adv):
        return _descend(self.g_losses(phone, dslr, adv), self.opt_g)

    def d_losses(self, phone, dslr, adv) -> torch.Tensor:
        """The discriminator step's forward pass: ``[loss, accuracy]`` (accuracy detached)."""
        with self._autocast():
            with torch.no_grad():
                enhanced = self.G(phone)
            mixed = to_gray(enhanced) * (1 - adv[:, :, None, None]) + to_gray(dslr) * adv[:, :, None, None]
            prob = self.D_step(mixed)
            loss = self._discriminator_loss(prob, adv)
        return torch.stack([loss, discriminator_accuracy(prob.detach(), adv)])

    def d_step(self, phone, dslr, adv):
        return _descend(self.d_losses(phone, dslr, adv), self.opt_d)

    def step(self) -> torch.Tensor:
        """One iteration; returns a device tensor of the losses (no host synchronisation)."""
        g = self.g_step(*self._batch(swaps=False))
        d = self.d_step(*self._batch(swaps=True))
        self.iteration += 1
        return torch.cat([g, d])

    # -- what the loop shows, scores and saves ---------------------------------------------
    @property
    def total_iters(self) -> int:
        return self.cfg.iters

    @staticmethod
    def stage_ends_at(iteration: int) -> bool:
        return False          # one stage

    def step_memory(self) -> int:
        """Estimated peak bytes of one training step of this process (:mod:`dpedkit.train.memory`)."""
        from dpedkit.train.memory import step_bytes
        return step_bytes(self, self.part.stop - self.part.start)

    def memory_terms(self, room: float) -> tuple[str, str]:
        """What :func:`~dpedkit.train.memory.check_memory` says of a step that does not fit:
        the step, and the batch size that fits in ``room`` bytes per process."""
        from dpedkit.train.memory import step_bytes
        one, two = step_bytes(self, 1), step_bytes(self, 2)
        fits = int((room - (2 * one - two)) // max(two - one, 1)) * self.ranks.world
        return (f"one training step at --batch-size {self.cfg.batch_size}",
                f"--batch-size {fits} fits" if fits >= 1 else "not even --batch-size 1 fits: free memory or use smaller patches")

    def describe(self) -> str:
        return (f"{self.train_phone.shape[0]} training and {self.test_phone.shape[0]} test patches, "
                f"{self.cfg.iters} iterations of batch {self.cfg.batch_size}")

    @staticmethod
    def loss_text(values: list[float]) -> str:
        g, _, _, _, _, d, acc = values
        return f" loss G {g:.4g} D {d:.3g} D acc {acc:.2f}"

    @staticmethod
    def score_text(row: dict) -> str:
        return (f"test PSNR {row['test_psnr']:.2f} dB, SSIM {row['test_ssim']:.4f}"
                + (f", loss G {row['loss_generator']:.4g}, D accuracy {row['disc_accuracy']:.2f}"
                   if "loss_generator" in row else ""))

    @staticmethod
    def best_scope(row: dict):
        return None           # every evaluation's PSNR compares

    # -- evaluation, state ----------------------------------------------------------------
    def evaluate(self) -> dict:
        self.G.eval()

        def enhance(phone):
            with self._autocast():
                return self.G(phone)
        scores = score_patches(enhance, self.test_phone, self.test_dslr, self.device)
        self.G.train()
        return {f"test_{k}": v for k, v in scores.items()}

    @torch.no_grad()
    def sample_image(self, n: int = 4) -> np.ndarray:
        phone = self.test_phone[:n].to(self.device).float() / 255
        enh = self.G(phone).float().clamp(0, 1)
        dslr = self.test_dslr[:n].to(self.device).float() / 255
        rows = torch.cat([phone, enh, dslr], dim=3)  # phone | enhanced | DSLR
        img = torch.cat(list(rows), dim=1).permute(1, 2, 0).cpu().numpy()
        return (img * 255 + 0.5).astype(np.uint8)

    def state(self, **extra) -> dict:
        """The full training state (``extra``: the loop's running sums, time spent)."""
        return {"generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "iteration": self.iteration,
                "rng": self.rng.get_state(), "torch_rng": torch.get_rng_state(), "config": recorded(self.cfg),
                **extra}

    def generator_state(self, **extra) -> dict:
        """Generator weights only (1.6 MB, fp32, contiguous): what enhance and export need."""
        weights = {k: v.detach().float().cpu().contiguous() for k, v in self.G.state_dict().items()}
        return {"generator": weights, "iteration": self.iteration, "config": recorded(self.cfg), **extra}

    def load(self, path: Path) -> dict:
        """Restore the training state of ``path``; returns the whole checkpoint dict."""
        from dpedkit.model.checkpoint import load_checkpoint
        ck = load_checkpoint(path)
        if "discriminator" not in ck or "opt_g" not in ck:
            raise TrainError(f"{path} holds no training state to resume from (generator weights only)")
        self.G.load_state_dict(ck["generator"])
        self.D.load_state_dict(ck["discriminator"])
        self.opt_g.load_state_dict(ck["opt_g"])
        self.opt_d.load_state_dict(ck["opt_d"])
        self.iteration = int(ck["iteration"])
        self.rng.set_state(ck["rng"])
        torch.set_rng_state(ck["torch_rng"])
        return ck


def content_network(cfg: TrainConfig, device: torch.device, log):
    """VGG-19 for the content loss (weights from ``--vgg``, ``$DPEDKIT_VGG`` or torch hub's
    cache, never downloaded), or None with ``--content-loss none`` (and a warning)."""
    if cfg.content_loss == "none":
        log("warning: training without the content loss (--content-loss none): expect weaker results")
        return None
    from dpedkit.model.vgg import WEIGHT_HELP, find_vgg_weights, load_vgg19
    path = find_vgg_weights(cfg.vgg)
    if path is None:
        raise TrainError(WEIGHT_HELP)
    return load_vgg19(path).to(device)


def _descend(losses: torch.Tensor, opt: torch.optim.Optimizer) -> torch.Tensor:
    """One optimiser step on ``losses[0]`` (the total); returns the losses detached."""
    opt.zero_grad(set_to_none=True)
    losses[0].backward()
    opt.step()
    return losses.detach()
