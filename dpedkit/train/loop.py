"""The DPED training loop: one generator step and one discriminator step per iteration.

Options are a plain dataclass (:class:`TrainConfig`; the CLI is generated from its fields).
Everything that makes a run reproducible — the networks, both optimisers, the iteration, the
random streams, the running loss sums and the time spent — is in the checkpoint, so a resumed
run continues exactly as an uninterrupted one (on the CPU, bit for bit), whether it stopped
at an evaluation, on SIGINT/SIGTERM (the current iteration is finished and ``last.pt``
saved), or was killed (it resumes from the last evaluation).

Run folder::

    config.json            the recipe and options of the run (``--config`` re-runs it)
    config_changes.jsonl   one line per resume that changed the recipe (``--override``)
    metrics.csv            one row per evaluation: the source of truth for every figure
    samples/<iter>.png     phone | enhanced | DSLR test patches
    checkpoints/last.pt    the full training state (resume)
    checkpoints/iter_<n>.pt  the last ``keep_checkpoints`` evaluations' full states
    checkpoints/best.pt    generator weights at the best test PSNR so far (small)
    checkpoints/generator.pt  the latest generator weights (small; enhance/export)
    tensorboard/           with ``--tensorboard``: losses, metrics, samples
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
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
LOSS_KEYS = METRIC_FIELDS[1:8]


def _opt(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    data_dir: str = field(metadata={"help": "The DPED layout: DATA_DIR[/<phone>]/training_data/..."})
    phone: str = field(metadata={"help": "Phone folder name in the DPED layout (default: from the dataset's "
                                         "dataset.json, or DATA_DIR's only sub-folder)."})
    dslr: str = _opt("canon", "DSLR folder name in the DPED layout (default: from dataset.json, else canon).")
    out: str = _opt("runs/dped", "Run folder (default: runs/<phone>).")
    vgg: str | None = _opt(None, "VGG-19 weights: torchvision .pth or MatConvNet .mat (else $DPEDKIT_VGG, "
                                 "else torch hub's cache).")
    content_loss: str = _opt("vgg", "Content loss on VGG-19 relu5_4 features, or none.", choices=["vgg", "none"])
    iters: int = _opt(20000, "Training iterations (one generator and one discriminator step each).")
    batch_size: int = _opt(50, "Patches per step (the global batch with several processes).")
    lr: float = _opt(5e-4, "Adam learning rate of both networks.")
    w_content: float = _opt(10.0, "Weight of the VGG content loss.")
    w_color: float = _opt(0.5, "Weight of the colour (blur) loss.")
    w_texture: float = _opt(1.0, "Weight of the texture (adversarial) loss.")
    w_tv: float = _opt(2000.0, "Weight of the total-variation loss.")
    eval_every: int = _opt(1000, "Evaluate, write metrics/samples/checkpoints every N iterations.")
    eval_patches: int = _opt(500, "Test patches per evaluation (batches of 50).")
    train_size: int | None = _opt(None, "Use at most this many training patches (default: all).")
    device: str = _opt("auto", "auto: CUDA when available, else the CPU.", choices=["auto", "cpu", "cuda"])
    precision: str = _opt("auto", "Autocast dtype of the forward passes (auto: bf16 on CUDA, fp32 elsewhere; "
                                  "bf16 runs on a CPU too).", choices=["auto", "fp32", "bf16"])
    channels_last: bool | None = _opt(None, "NHWC memory format for images and weights (default: on CUDA).")
    fused_adam: bool | None = _opt(None, "Fused Adam kernels (default: on CUDA).")
    compile: bool = _opt(False, "torch.compile the networks (inductor; also on CPU).")
    seed: int = _opt(0, "Seed of the batches, swaps and the networks' initialisation.")
    resume: bool = _opt(False, "Expect a run to resume in --out (re-running the same command resumes anyway).")
    override: bool = _opt(False, "Resume even though the recipe changed; the change is recorded in "
                                 "config_changes.jsonl.")
    keep_checkpoints: int = _opt(3, "Keep the last N evaluations' full checkpoints iter_<n>.pt (0: none).")
    log_every: float = _opt(60.0, "Seconds between progress lines when stderr is not a terminal.")
    tensorboard: bool = _opt(False, "Also log losses, metrics and samples to <out>/tensorboard "
                                    "(pip install 'dpedkit[tensorboard]').")


# Options that change what is computed: resuming with any of them changed is refused unless
# --override. The others (where to write, how long, how fast, how verbose) may change freely.
RECIPE_FIELDS = ("data_dir", "phone", "dslr", "vgg", "content_loss", "batch_size", "lr", "w_content", "w_color",
                 "w_texture", "w_tv", "eval_patches", "train_size", "seed", "precision")
# per-invocation switches: not part of the recorded recipe
_NOT_RECORDED = ("resume", "override")
PATH_FIELDS = ("data_dir", "out", "vgg")


class TrainError(RuntimeError):
    pass


class Interrupted(Exception):
    """Training stopped on a signal after saving ``last.pt``; ``exit_code`` is 128 + signal."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


def recorded(cfg: TrainConfig) -> dict:
    """The config as ``config.json`` records it: paths absolute, per-invocation switches left out."""
    d = asdict(cfg)
    for k in PATH_FIELDS:
        if d[k] is not None:
            d[k] = os.path.abspath(d[k])
    return {k: v for k, v in d.items() if k not in _NOT_RECORDED}


def recipe_changes(old: dict, new: TrainConfig) -> dict:
    """``{field: [old, new]}`` for every recipe field that differs (paths compared absolute)."""
    now = recorded(new)
    return {k: [old.get(k), now[k]] for k in RECIPE_FIELDS if old.get(k) != now[k]}


def config_from_json(path: str | os.PathLike, **overrides) -> TrainConfig:
    """The :class:`TrainConfig` recorded in a run's ``config.json``, with ``overrides`` applied."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise TrainError(f"cannot read the recorded config {path}: {e}") from None
    if not isinstance(data, dict):
        raise TrainError(f"{path} is not a dpedkit train config")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TrainError(f"{path} has options this dpedkit does not know: {', '.join(unknown)}")
    data = {k: v for k, v in data.items() if k not in _NOT_RECORDED}
    data.update(overrides)
    missing = [k for k in ("data_dir", "phone") if k not in data]
    if missing:
        raise TrainError(f"{path} lacks {', '.join(missing)}")
    return TrainConfig(**data)


class Trainer:
    """Holds the networks, optimisers, data and random streams of one run.

    Every switch but the device is the same code on a CPU and on CUDA: autocast on
    ``device.type`` (``precision``), channels_last, fused Adam and ``torch.compile``
    (inductor) all run on a CPU, so tests exercise them.
    """

    def __init__(self, cfg: TrainConfig, log=print, ranks: Ranks = Ranks()):
        self.cfg, self.log, self.ranks = cfg, log, ranks
        self.device = resolve_device(cfg.device)
        self.cuda = self.device.type == "cuda"
        if self.cuda and ranks.world > 1:
            self.device = torch.device("cuda", ranks.local)
        if cfg.precision not in ("auto", "fp32", "bf16"):
            raise TrainError(f"--precision {cfg.precision!r}: choose auto, fp32 or bf16")
        self.precision = ("bf16" if self.cuda else "fp32") if cfg.precision == "auto" else cfg.precision
        self.channels_last = self.cuda if cfg.channels_last is None else cfg.channels_last
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
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
        elif cfg.content_loss == "none":
            log("warning: training without the content loss (--content-loss none): expect weaker results")
        else:
            raise TrainError(f"--content-loss {cfg.content_loss!r}: choose vgg or none")
        for m in (self.G, self.D, self.vgg):
            if m is not None:
                m.to(memory_format=self.memory_format)
        fused = self.cuda if cfg.fused_adam is None else cfg.fused_adam
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, fused=fused)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, fused=fused)
        self.kernel = torch.from_numpy(dped_blur_kernel()).to(self.device)
        # what the steps run through: DDP wrappers that average gradients over the processes
        # (the discriminator step's D), or the networks themselves; compiled with --compile.
        # The generator step's D is the plain one: its gradients from that step are discarded.
        self.G_step, self.D_step, self.D_judge = self.G, self.D, self.D
        if ranks.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [self.device.index] if self.cuda else None
            self.G_step, self.D_step = DDP(self.G, device_ids=ids), DDP(self.D, device_ids=ids)
        if cfg.compile:
            self.G_step, self.D_step = torch.compile(self.G_step), torch.compile(self.D_step)
            self.D_judge = self.D_step if ranks.world == 1 else torch.compile(self.D)
        self.rng = torch.Generator().manual_seed(cfg.seed)   # batches and discriminator swaps
        self.iteration = 0

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

    def g_step(self, phone, dslr, adv):
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
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return torch.stack([loss, loss_content, loss_color, loss_texture, loss_tv]).detach()

    def d_step(self, phone, dslr, adv):
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
        g = self.g_step(*self._batch(swaps=False))
        d = self.d_step(*self._batch(swaps=True))
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

    def state(self, **extra) -> dict:
        """The full training state (``extra``: the loop's running sums, time spent)."""
        return {"generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "iteration": self.iteration,
                "rng": self.rng.get_state(), "torch_rng": torch.get_rng_state(), "config": recorded(self.cfg),
                **extra}

    def save(self, path: Path, **extra) -> None:
        _save_atomic(path, self.state(**extra))

    def save_generator(self, path: Path, **extra) -> None:
        """Generator weights only (1.6 MB, fp32, contiguous): what enhance and export need."""
        weights = {k: v.detach().float().cpu().contiguous() for k, v in self.G.state_dict().items()}
        _save_atomic(path, {"generator": weights, "iteration": self.iteration, "config": recorded(self.cfg),
                            **extra})

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


def _save_atomic(path: Path, obj: dict) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())


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
    return dict(zip(LOSS_KEYS, v.tolist()))


def train(cfg: TrainConfig, log=print, progress: bool = True) -> list[dict]:
    """Train (or resume) a run in ``cfg.out``; returns the metric rows written.

    A run folder that holds a checkpoint is resumed when the recipe is the same (re-running
    the same command continues it); a changed recipe is refused unless ``cfg.override``.
    On SIGINT/SIGTERM the current iteration is finished, ``last.pt`` saved and
    :class:`Interrupted` raised (its message says how to resume).

    Under torchrun (``WORLD_SIZE`` > 1) this is one of the processes of a data-parallel run
    (:mod:`dpedkit.train.distributed`); only rank 0 writes, logs and returns rows."""
    if cfg.keep_checkpoints < 0:
        raise TrainError(f"--keep-checkpoints {cfg.keep_checkpoints}: give 0 or more")
    ranks = ranks_from_env()
    start(ranks, resolve_device(cfg.device).type == "cuda")
    try:
        if not ranks.main:
            return _train(cfg, lambda *_: None, False, ranks)
        with exclusive(cfg.out, "dpedkit train"):
            return _train(cfg, log, progress, ranks)
    finally:
        stop()


class StopSignals:
    """SIGINT/SIGTERM set a flag the loop checks after each iteration; a second signal stops
    at once (KeyboardInterrupt). Only installed in the main thread (Python's rule)."""

    def __init__(self):
        self.signum = 0
        self.saved = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def _format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}"


class Progress:
    """A progress line with rate and ETA: redrawn in place on a terminal (cleared before any
    other line is printed), a plain line every ``every`` seconds otherwise (nohup, Slurm)."""

    def __init__(self, total: int, first: int, tty: bool, every: float, log, stream=None):
        self.total, self.first, self.tty, self.every, self.log = total, first, tty, every, log
        self.stream = stream or sys.stderr
        self.t0 = self.last = time.perf_counter()
        self.drawn = False

    def line(self, iteration: int, readout: str) -> str:
        elapsed = time.perf_counter() - self.t0
        rate = (iteration - self.first) / max(elapsed, 1e-9)
        eta = _format_duration((self.total - iteration) / rate) if rate > 0 else "?"
        pct = 100 * iteration / max(self.total, 1)
        return f"{iteration}/{self.total} ({pct:.0f}%) {rate:.3g} it/s ETA {eta}{readout}"

    def due(self) -> bool:
        return time.perf_counter() - self.last >= (0.5 if self.tty else self.every)

    def show(self, iteration: int, readout: str) -> None:
        self.last = time.perf_counter()
        if self.tty:
            self.stream.write(f"\r{self.line(iteration, readout)}\033[K")
            self.stream.flush()
            self.drawn = True
        else:
            self.log(f"iter {self.line(iteration, readout)}")

    def clear(self) -> None:
        """Erase the progress line so the next line starts in column 0 on its own."""
        if self.tty and self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.drawn = False


def _write_rows(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, METRIC_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def _open_tensorboard(out: Path, purge_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TrainError("--tensorboard needs the tensorboard package: pip install 'dpedkit[tensorboard]'") from None
    return SummaryWriter(str(out / "tensorboard"), purge_step=purge_step)


def _prepare_resume(cfg: TrainConfig, out: Path, last: Path, log) -> None:
    """Refuse a changed recipe unless ``cfg.override``; record an accepted change."""
    from dpedkit.model.checkpoint import load_checkpoint
    old = load_checkpoint(last).get("config") or {}
    changes = recipe_changes(old, cfg)
    if not changes:
        return
    listed = "; ".join(f"{k}: {a!r} → {b!r}" for k, (a, b) in changes.items())
    if not cfg.override:
        raise TrainError(
            f"{out} holds a run trained with a different recipe ({listed}). To continue it with the new "
            f"settings add --override (the change is recorded in {out / 'config_changes.jsonl'}); to resume it "
            f"unchanged run: dpedkit train --config {out / 'config.json'}; or choose another --out")
    line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "changes": changes})
    path = out / "config_changes.jsonl"
    before = path.read_text() if path.exists() else ""
    write_text_atomic(path, before + line + "\n")
    log(f"recipe changed on resume (--override): {listed}; recorded in {path}")


def _train(cfg: TrainConfig, log, progress: bool, ranks: Ranks) -> list[dict]:
    out = Path(cfg.out)
    ckdir = out / "checkpoints"
    last = ckdir / "last.pt"
    if ranks.main:
        remove_stale_temps(out)  # a killed run's half-written checkpoint; the lock says no one else writes here
    resuming = last.exists()
    if resuming:
        _prepare_resume(cfg, out, last, log if ranks.main else (lambda *_: None))
    t = Trainer(cfg, log, ranks)
    rows: list[dict] = []
    acc = torch.zeros(len(LOSS_KEYS), device=t.device)   # loss sums since the last evaluation
    n_acc, seconds_before = 0, 0.0
    if resuming:
        ck = t.load(last)
        running = ck.get("running") or {}
        if "sum" in running:
            acc.copy_(running["sum"])
            n_acc = int(running["n"])
        seconds_before = float(ck.get("seconds", 0.0))
        if ranks.main and (out / "metrics.csv").exists():
            with open(out / "metrics.csv", newline="") as f:
                rows = [dict(r) for r in csv.DictReader(f)]
            rows = [r for r in rows if int(r["iteration"]) <= t.iteration]
        log(f"resumed at iteration {t.iteration}")
    elif cfg.resume:
        log(f"nothing to resume in {out} (no checkpoint yet): starting from iteration 0")
    if ranks.main:
        write_text_atomic(out / "config.json", json.dumps(recorded(cfg), indent=1))
    if t.iteration >= cfg.iters and rows:
        log(f"{out} is already at iteration {t.iteration} of {cfg.iters}: nothing to do "
            f"(raise --iters to train further)")
        return rows
    log(f"training on {t.device} ({t.precision}{', channels_last' if t.channels_last else ''}"
        f"{', compiled' if cfg.compile else ''})" + (f" × {ranks.world} processes" if ranks.world > 1 else "")
        + f": {t.train_phone.shape[0]} training and {t.test_phone.shape[0]} test patches, "
        f"{cfg.iters} iterations of batch {cfg.batch_size}")
    t_start = time.perf_counter()
    tb = _open_tensorboard(out, t.iteration) if cfg.tensorboard and ranks.main else None
    best = max((float(r["test_psnr"]) for r in rows if r.get("test_psnr") not in (None, "")), default=-np.inf)
    show = progress and ranks.main
    bar = Progress(cfg.iters, t.iteration, show and sys.stderr.isatty(), cfg.log_every, log)
    readout = LossReadout(t.device)

    def seconds() -> float:
        return seconds_before + time.perf_counter() - t_start

    def running() -> dict:
        return {"running": {"sum": acc.detach().cpu().clone(), "n": n_acc}, "seconds": seconds()}

    def say(msg: str) -> None:
        bar.clear()
        log(msg)

    def record(losses: torch.Tensor | None):
        nonlocal best
        if losses is not None:
            losses = mean_over_ranks(losses, ranks)
        if not ranks.main:
            return
        row = {"iteration": t.iteration, **(_losses_dict(losses) if losses is not None else {}),
               **t.evaluate(), "seconds": round(seconds(), 2)}
        rows.append(row)
        _write_rows(out / "metrics.csv", rows)
        sample = t.sample_image()
        write_image(out / "samples" / f"{t.iteration}.png", sample)
        if tb is not None:
            for k, v in row.items():
                if k not in ("iteration", "seconds"):
                    tb.add_scalar(("test/" if k.startswith("test_") else "train/") + k.removeprefix("test_"),
                                  float(v), t.iteration)
            tb.add_image("samples (phone | enhanced | DSLR)", sample, t.iteration, dataformats="HWC")
            tb.flush()
        if row["test_psnr"] > best:
            best = row["test_psnr"]
            t.save_generator(ckdir / "best.pt", test_psnr=best)
        t.save_generator(ckdir / "generator.pt", test_psnr=row["test_psnr"])
        if cfg.keep_checkpoints > 0:
            t.save(ckdir / f"iter_{t.iteration}.pt", running={"n": 0}, seconds=seconds())
            _prune_history(ckdir, cfg.keep_checkpoints)
        # last: a run killed before this rename resumes from the previous evaluation
        t.save(last, running={"n": 0}, seconds=seconds())
        say(f"iter {t.iteration}: test PSNR {row['test_psnr']:.2f} dB, SSIM {row['test_ssim']:.4f}"
            + (f", loss G {row['loss_generator']:.4g}, D accuracy {row['disc_accuracy']:.2f}"
               if losses is not None else ""))

    try:
        with StopSignals() as stop_signals:
            if t.iteration == 0 and not rows:  # a run killed just after its first checkpoint has this row
                record(None)
            while t.iteration < cfg.iters:
                acc += t.step()
                n_acc += 1
                if t.iteration % cfg.eval_every == 0 or t.iteration == cfg.iters:
                    record(acc / n_acc)
                    acc.zero_()
                    n_acc = 0
                elif show and bar.due():
                    readout.push(acc / n_acc)
                    bar.show(t.iteration, readout.text())
                if t.iteration < cfg.iters and _stop_requested(stop_signals, t.iteration, ranks, t.device):
                    if ranks.main:
                        t.save(last, **running())
                    bar.clear()
                    name = signal.Signals(stop_signals.signum or signal.SIGTERM).name
                    raise Interrupted(stop_signals.signum or signal.SIGTERM,
                                      f"{name}: stopped after iteration {t.iteration} and saved {last}. "
                                      f"To resume, re-run the same command, or: "
                                      f"dpedkit train --config {out / 'config.json'}")
    finally:
        bar.clear()
        if tb is not None:
            tb.close()
    return rows


def _stop_requested(signals: StopSignals, iteration: int, ranks: Ranks, device: torch.device) -> bool:
    """Whether to stop now. With several processes every one must stop after the same
    iteration: the flag is agreed on (max over processes) every 10 iterations."""
    if ranks.world == 1:
        return bool(signals.signum)
    if iteration % 10:
        return False
    import torch.distributed as dist
    flag = torch.tensor([float(signals.signum)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() and not signals.signum:
        signals.signum = int(flag.item())
    return bool(flag.item())


def _prune_history(ckdir: Path, keep: int) -> None:
    """Delete all but the ``keep`` most recent ``iter_<n>.pt``."""
    history = sorted((int(p.stem.split("_")[1]), p) for p in ckdir.glob("iter_*.pt")
                     if p.stem.split("_")[1].isdigit())
    for _, p in history[:-keep]:
        p.unlink(missing_ok=True)
