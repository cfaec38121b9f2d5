"""The DPED training loop: one generator step and one discriminator step per iteration.

Options are a plain dataclass the CLI fills. Everything that makes a run reproducible — the
networks, both optimisers, the iteration and the random streams — is in the checkpoint, so a
resumed run continues exactly as an uninterrupted one (on the CPU, bit for bit).
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from dpedkit.fs import exclusive, remove_stale_temps, write_bytes_atomic, write_text_atomic
from dpedkit.imageio import write_image
from dpedkit.metrics import score_patches
from dpedkit.layout import dataset_root
from dpedkit.model.device import resolve_device
from dpedkit.train.data import load_split
from dpedkit.train.distributed import Ranks, batch_slice, mean_over_ranks, ranks_from_env, start, stop
from dpedkit.train.losses import (color_loss, content_loss, discriminator_accuracy, discriminator_loss,
                                  dped_blur_kernel, tv_loss)
from dpedkit.model.networks import Discriminator, Generator, to_gray

METRIC_FIELDS = ["iteration", "loss_generator", "loss_content", "loss_color", "loss_texture", "loss_tv",
                 "loss_discriminator", "disc_accuracy", "test_psnr", "test_ssim", "test_ms_ssim", "seconds"]


@dataclass
class TrainConfig:
    data_dir: str
    phone: str
    dslr: str = "canon"
    out: str = "runs/dped"
    vgg: str | None = None
    content_loss: str = "vgg"         # vgg | none
    iters: int = 20000
    batch_size: int = 50
    lr: float = 5e-4
    w_content: float = 10.0
    w_color: float = 0.5
    w_texture: float = 1.0
    w_tv: float = 2000.0
    eval_every: int = 1000
    eval_patches: int = 500           # test patches used at each evaluation (batches of 50)
    train_size: int | None = None     # at most this many training patches (None: all)
    device: str = "auto"              # auto | cpu | cuda
    amp: bool = True                  # bf16 autocast on CUDA
    compile: bool = False
    seed: int = 0
    resume: bool = False
    keep_checkpoints: bool = True     # also write checkpoints/iter_<n>.pt at each evaluation


class TrainError(RuntimeError):
    pass


class Trainer:
    """Holds the networks, optimisers, data and random streams of one run."""

    def __init__(self, cfg: TrainConfig, log=print, ranks: Ranks = Ranks()):
        self.cfg, self.log, self.ranks = cfg, log, ranks
        self.device = resolve_device(cfg.device)
        self.cuda = self.device.type == "cuda"
        if self.cuda and ranks.world > 1:
            self.device = torch.device("cuda", ranks.local)
        try:
            self.part = batch_slice(cfg.batch_size, ranks)
        except ValueError as e:
            raise TrainError(str(e)) from None
        self.out = Path(cfg.out)
        torch.manual_seed(cfg.seed)
        root = dataset_root(cfg.data_dir, cfg.phone)
        self.train_phone, self.train_dslr = load_split(root, cfg.phone, cfg.dslr, "train", cfg.train_size, size=None)
        self.test_phone, self.test_dslr = load_split(root, cfg.phone, cfg.dslr, "test", cfg.eval_patches, size=None)
        if self.cuda:  # the whole set on the GPU: sampling a batch is an index, no host copy
            self.train_phone, self.train_dslr = self.train_phone.to(self.device), self.train_dslr.to(self.device)
        self.G = Generator().to(self.device)
        self.D = Discriminator(self.train_phone.shape[-1]).to(self.device)
        self.vgg = None
        if cfg.content_loss == "vgg":
            from dpedkit.model.vgg import WEIGHT_HELP, find_vgg_weights, load_vgg19
            path = find_vgg_weights(cfg.vgg)
            if path is None:
                raise TrainError(WEIGHT_HELP)
            self.vgg = load_vgg19(path).to(self.device)
        else:
            log("warning: training without the content loss (--content-loss none): expect weaker results")
        if self.cuda:
            for m in (self.G, self.D, self.vgg):
                if m is not None:
                    m.to(memory_format=torch.channels_last)
        fused = dict(fused=True) if self.cuda else {}
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, **fused)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, **fused)
        self.kernel = torch.from_numpy(dped_blur_kernel()).to(self.device)
        # what the gradient steps run through: DDP wrappers that average gradients over the
        # processes, or the networks themselves in one process
        self.G_step, self.D_step = self.G, self.D
        if ranks.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [self.device.index] if self.cuda else None
            self.G_step, self.D_step = DDP(self.G, device_ids=ids), DDP(self.D, device_ids=ids)
        self.rng = torch.Generator().manual_seed(cfg.seed)   # batches and discriminator swaps
        self.iteration = 0
        self.g_step = torch.compile(self._g_step) if cfg.compile else self._g_step
        self.d_step = torch.compile(self._d_step) if cfg.compile else self._d_step

    # -- one iteration ------------------------------------------------------------------
    def _batch(self):
        n = self.train_phone.shape[0]
        # the global batch, the same in every process; each trains on its own slice
        idx = torch.randint(n, (self.cfg.batch_size,), generator=self.rng)[self.part]
        adv = torch.randint(0, 2, (self.cfg.batch_size, 1), generator=self.rng).float()[self.part]
        idx, adv = idx.to(self.device, non_blocking=True), adv.to(self.device, non_blocking=True)
        fmt = torch.channels_last if self.cuda else torch.contiguous_format
        phone = (self.train_phone[idx].to(self.device, non_blocking=True).float() / 255).contiguous(memory_format=fmt)
        dslr = (self.train_dslr[idx].to(self.device, non_blocking=True).float() / 255).contiguous(memory_format=fmt)
        return phone, dslr, adv

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda and self.cfg.amp)

    def _discriminator_loss(self, prob, adv):
        # a sum over the batch, as in the original: each process scales its slice's sum so that
        # DDP's mean of the gradients is the gradient of the whole batch's sum
        return discriminator_loss(prob, adv) * self.ranks.world

    def _g_step(self, phone, dslr, adv):
        c = self.cfg
        with self._autocast():
            enhanced = self.G_step(phone)
            mixed = to_gray(enhanced) * (1 - adv[:, :, None, None]) + to_gray(dslr) * adv[:, :, None, None]
            # not detached: the texture loss must reach the generator; the plain D, since its
            # gradients from this step are discarded (no need to average them over processes)
            prob = self.D(mixed)
            loss_texture = -self._discriminator_loss(prob, adv)
            loss_color = color_loss(enhanced.float(), dslr, self.kernel)
            loss_tv = tv_loss(enhanced.float())
            loss_content = (content_loss(self.vgg(enhanced), self.vgg(dslr)).float() if self.vgg is not None
                            else torch.zeros((), device=phone.device))
        loss = c.w_content * loss_content + c.w_texture * loss_texture + c.w_color * loss_color + c.w_tv * loss_tv
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return torch.stack([loss, loss_content, loss_color, loss_texture, loss_tv]).detach()

    def _d_step(self, phone, dslr, adv):
        with self._autocast():
            with torch.no_grad():
                enhanced = self.G(phone)
            mixed = to_gray(enhanced) * (1 - adv[:, :, None, None]) + to_gray(dslr) * adv[:, :, None, None]
            prob = self.D_step(mixed)
            loss = self._discriminator_loss(prob, adv)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return torch.stack([loss.detach(), discriminator_accuracy(prob.detach(), adv)])

    def step(self) -> torch.Tensor:
        """One iteration; returns a device tensor of the losses (no host synchronisation)."""
        g = self.g_step(*self._batch())
        d = self.d_step(*self._batch())
        self.iteration += 1
        return torch.cat([g, d])

    # -- evaluation, checkpoints ----------------------------------------------------------
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

    def state(self) -> dict:
        return {"generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "iteration": self.iteration,
                "rng": self.rng.get_state(), "torch_rng": torch.get_rng_state(), "config": asdict(self.cfg)}

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        torch.save(self.state(), buf)
        write_bytes_atomic(path, buf.getvalue())

    def load(self, path: Path) -> None:
        from dpedkit.model.checkpoint import load_checkpoint
        ck = load_checkpoint(path)
        if "discriminator" not in ck or "opt_g" not in ck:
            raise TrainError(f"{path} holds no training state to resume from")
        self.G.load_state_dict(ck["generator"])
        self.D.load_state_dict(ck["discriminator"])
        self.opt_g.load_state_dict(ck["opt_g"])
        self.opt_d.load_state_dict(ck["opt_d"])
        self.iteration = int(ck["iteration"])
        self.rng.set_state(ck["rng"])
        torch.set_rng_state(ck["torch_rng"])


class LossReadout:
    """Current losses for the progress line without stalling the GPU.

    On CUDA the running means are copied to pinned host memory without blocking, and shown
    once the copy's event has completed (a few iterations late); on the CPU they are read
    directly.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.host = torch.zeros(7, pin_memory=self.cuda)
        self.event = torch.cuda.Event() if self.cuda else None
        self.shown: list[float] | None = None
        self.pending = False

    def push(self, mean: torch.Tensor) -> None:
        if self.event is None:
            self.shown = mean.tolist()
            return
        if self.pending:
            if not self.event.query():
                return  # the previous copy is still in flight: keep showing the older values
            self.shown = self.host.tolist()
        self.host.copy_(mean, non_blocking=True)
        self.event.record()
        self.pending = True

    def text(self) -> str:
        if self.shown is None:
            return ""
        g, _, _, _, _, d, acc = self.shown
        return f" loss G {g:.4g} D {d:.3g} D acc {acc:.2f}"


def _losses_dict(v: torch.Tensor) -> dict:
    keys = ["loss_generator", "loss_content", "loss_color", "loss_texture", "loss_tv", "loss_discriminator",
            "disc_accuracy"]
    return dict(zip(keys, v.tolist()))


def train(cfg: TrainConfig, log=print, progress: bool = True) -> list[dict]:
    """Train (or resume) a run in ``cfg.out``; returns the metric rows written.

    Under torchrun (``WORLD_SIZE`` > 1) this is one of the processes of a data-parallel run
    (:mod:`dpedkit.train.distributed`); only rank 0 writes, logs and returns rows."""
    ranks = ranks_from_env()
    start(ranks, resolve_device(cfg.device).type == "cuda")
    try:
        if not ranks.main:
            return _train(cfg, lambda *_: None, False, ranks)
        with exclusive(cfg.out, "dpedkit train"):
            return _train(cfg, log, progress, ranks)
    finally:
        stop()


def _train(cfg: TrainConfig, log, progress: bool, ranks: Ranks) -> list[dict]:
    out = Path(cfg.out)
    last = out / "checkpoints" / "last.pt"
    if last.exists() and not cfg.resume:
        raise TrainError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    if ranks.main:
        remove_stale_temps(out)  # a killed run's half-written checkpoint; the lock says no one else writes here
    t = Trainer(cfg, log, ranks)
    rows: list[dict] = []
    if cfg.resume and last.exists():
        t.load(last)
        if ranks.main and (out / "metrics.csv").exists():
            rows = [dict(r) for r in csv.DictReader(open(out / "metrics.csv"))]
            rows = [r for r in rows if int(r["iteration"]) <= t.iteration]
        log(f"resumed at iteration {t.iteration}")
    elif cfg.resume:
        log(f"nothing to resume in {out} (no checkpoint yet): starting from iteration 0")
    if ranks.main:
        write_text_atomic(out / "config.json", json.dumps(asdict(cfg), indent=1))
    log(f"training on {t.device}" + (f" × {ranks.world} processes" if ranks.world > 1 else "")
        + f": {t.train_phone.shape[0]} training and {t.test_phone.shape[0]} test patches, "
        f"{cfg.iters} iterations of batch {cfg.batch_size}")
    start = time.perf_counter()
    acc = torch.zeros(7, device=t.device)
    n_acc = 0

    def record(losses: torch.Tensor | None):
        if losses is not None:
            losses = mean_over_ranks(losses, ranks)
        if not ranks.main:
            return
        row = {"iteration": t.iteration, **(_losses_dict(losses) if losses is not None else {}),
               **t.evaluate(), "seconds": round(time.perf_counter() - start, 2)}
        rows.append(row)
        buf = io.StringIO()
        w = csv.DictWriter(buf, METRIC_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        write_text_atomic(out / "metrics.csv", buf.getvalue())
        write_image(out / "samples" / f"{t.iteration}.png", t.sample_image())
        t.save(last)
        if cfg.keep_checkpoints:
            t.save(out / "checkpoints" / f"iter_{t.iteration}.pt")
        log(f"iter {t.iteration}: test PSNR {row['test_psnr']:.2f} dB, SSIM {row['test_ssim']:.4f}"
            + (f", loss G {row['loss_generator']:.4g}, D accuracy {row['disc_accuracy']:.2f}" if losses is not None else ""))

    if t.iteration == 0 and not rows:  # a run killed just after its first checkpoint has this row
        record(None)
    show = progress and sys.stderr.isatty()
    readout = LossReadout(t.device)
    first, t_first = t.iteration, time.perf_counter()
    while t.iteration < cfg.iters:
        acc += t.step()
        n_acc += 1
        if show and t.iteration % 10 == 0:
            readout.push(acc / n_acc)
            rate = (t.iteration - first) / max(time.perf_counter() - t_first, 1e-9)
            sys.stderr.write(f"\r{t.iteration}/{cfg.iters} {rate:.2f} it/s{readout.text()}\033[K")
        if t.iteration % cfg.eval_every == 0 or t.iteration == cfg.iters:
            record(acc / n_acc)
            acc.zero_()
            n_acc = 0
    return rows
