"""The training loop every recipe shares: the DPED GAN (one generator step and one
discriminator step per iteration, :mod:`~dpedkit.train.trainer`) and the learned ISPs (one
step of the current stage, :mod:`~dpedkit.train.isp_trainer`).

Options are a plain dataclass (:class:`~dpedkit.train.config.TrainConfig`; the CLI is
generated from its fields). Everything that makes a run reproducible — the networks, both
optimisers, the iteration, the random streams, the running loss sums and the time spent — is
in the checkpoint, so a resumed run continues exactly as an uninterrupted one (on the CPU,
bit for bit), whether it stopped at an evaluation, on SIGINT/SIGTERM (the current iteration
is finished and ``last.pt`` saved), or was killed (it resumes from the last evaluation).

Run folder::

    config.json            the recipe and options of the run (``--config`` re-runs it)
    config_changes.jsonl   one line per resume that changed the recipe (``--override``)
    metrics.csv            one row per evaluation (and per finished stage of a learned
                           ISP): the source of truth for every figure
    samples/<iter>.png     phone | enhanced | DSLR test patches
    checkpoints/           last, iter_<n>, best, generator (:mod:`dpedkit.train.checkpoint`)
    tensorboard/           with ``--tensorboard``: losses, metrics, samples

The pieces: :mod:`~dpedkit.train.config` (options, recipe checks),
:mod:`~dpedkit.train.trainer` (networks and steps), :mod:`~dpedkit.train.checkpoint`,
:mod:`~dpedkit.train.records` (metrics.csv, TensorBoard), :mod:`~dpedkit.train.signals`
(SIGINT/SIGTERM), :mod:`~dpedkit.train.memory` (the step's memory, checked before the
first step) and :mod:`dpedkit.progress`; this module runs them. Its names stay importable
from here (``from dpedkit.train.loop import TrainConfig, Trainer, TrainError, ...``).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import torch

from dpedkit.fs import exclusive, remove_stale_temps, write_text_atomic
from dpedkit.imageio import write_image
from dpedkit.model.device import resolve_device
from dpedkit.progress import Progress
from dpedkit.train.checkpoint import CheckpointSaver
from dpedkit.train.config import (ISP_MODELS, PATH_FIELDS, RECIPE_FIELDS, TrainConfig, TrainError,  # noqa: F401
                                  check_fields, check_resume, config_from_json, recipe_changes, recorded, resolved)
from dpedkit.train.distributed import Ranks, mean_over_ranks, ranks_from_env, start, stop
from dpedkit.train.memory import check_memory
from dpedkit.train.records import Board, LossReadout, read_rows, write_rows
from dpedkit.train.signals import Interrupted, StopSignals, stop_requested
from dpedkit.train.trainer import LOSS_KEYS, METRIC_FIELDS, Trainer  # noqa: F401  (re-exported)


def train(cfg: TrainConfig, log=print, progress: bool = True, *, resume_command: str | None = None,
          iters_option: str = "--iters") -> list[dict]:
    """Train (or resume) a run in ``cfg.out``; returns the metric rows written.

    A run folder that holds a checkpoint is resumed when the recipe is the same (re-running
    the same command continues it); a changed recipe is refused unless ``cfg.override``.
    On SIGINT/SIGTERM the current iteration is finished, ``last.pt`` saved and
    :class:`Interrupted` raised; its message gives ``resume_command`` (default: ``dpedkit
    train --config <out>/config.json``, which holds every option the run started with; a
    caller with its own command, as the demo, passes its own). ``iters_option`` is the option
    the "nothing to do" hint tells to raise (the demo's is ``--train-iters``).

    Under torchrun (``WORLD_SIZE`` > 1) this is one of the processes of a data-parallel run
    (:mod:`dpedkit.train.distributed`); only rank 0 writes, logs and returns rows."""
    check_fields(cfg)      # again: a config may have been changed since it was made
    cfg = resolved(cfg)
    ranks = ranks_from_env()
    start(ranks, resolve_device(cfg.device).type == "cuda")
    hints = (resume_command or f"dpedkit train --config {Path(cfg.out) / 'config.json'}", iters_option)
    try:
        if not ranks.main:
            return _Run(cfg, lambda *_: None, False, ranks, hints).run()
        with exclusive(cfg.out, "dpedkit train"):
            return _Run(cfg, log, progress, ranks, hints).run()
    finally:
        stop()


def make_trainer(cfg: TrainConfig, log, ranks: Ranks):
    """The trainer of ``cfg.model`` (resolved: not ``auto``)."""
    if cfg.model in ISP_MODELS:
        from dpedkit.train.isp_trainer import IspTrainer
        return IspTrainer(cfg, log, ranks)
    return Trainer(cfg, log, ranks)


class _Run:
    """One process's run: prepares (resume checks, the trainer, config.json), then iterates,
    evaluating every ``eval_every`` iterations. Only the main rank writes and logs."""

    def __init__(self, cfg: TrainConfig, log, progress: bool, ranks: Ranks, hints: tuple[str, str]):
        self.cfg, self.log, self.ranks, self.main = cfg, log, ranks, ranks.main
        self.resume_command, self.iters_option = hints
        self.show = progress and ranks.main
        self.out = Path(cfg.out)
        self.saver = CheckpointSaver(self.out / "checkpoints", cfg.keep_checkpoints)
        self.rows: list[dict] = []
        self.n_acc, self.seconds_before = 0, 0.0

    def run(self) -> list[dict]:
        t = self._prepare()
        if t.iteration >= t.total_iters and self.rows:
            self.log(f"{self.out} is already at iteration {t.iteration} of {t.total_iters}: nothing to do "
                     f"(raise {self.iters_option} to train further)")
            return self.rows
        self._announce()
        if self.main:
            check_memory(t, self.log, ignore=self.cfg.ignore_memory)
        return self._loop()

    # -- before the first step ----------------------------------------------------------
    def _prepare(self) -> Trainer:
        cfg, last = self.cfg, self.saver.last
        if self.main:
            remove_stale_temps(self.out)  # a killed run's half-written checkpoint; the lock says no one else writes here
        resuming = last.exists()
        if resuming:
            from dpedkit.model.checkpoint import load_checkpoint
            check_resume(cfg, load_checkpoint(last).get("config") or {}, self.out,
                         self.log if self.main else (lambda *_: None))
        self.t = make_trainer(cfg, self.log, self.ranks)
        self.acc = torch.zeros(len(self.t.loss_keys), device=self.t.device)   # loss sums since the last evaluation
        if resuming:
            self._restore()
        elif cfg.resume:
            self.log(f"nothing to resume in {self.out} (no checkpoint yet): starting from iteration 0")
        if self.main:
            write_text_atomic(self.out / "config.json", json.dumps(recorded(cfg), indent=1))
        return self.t

    def _restore(self) -> None:
        ck = self.t.load(self.saver.last)
        running = ck.get("running") or {}
        if "sum" in running:
            self.acc.copy_(running["sum"])
            self.n_acc = int(running["n"])
        self.seconds_before = float(ck.get("seconds", 0.0))
        if self.main:
            self.rows = read_rows(self.out / "metrics.csv", self.t.iteration)
        self.log(f"resumed at iteration {self.t.iteration}")

    def _announce(self) -> None:
        t, cfg, world = self.t, self.cfg, self.ranks.world
        self.log(f"training on {t.device} ({t.precision}{', channels_last' if t.channels_last else ''}"
                 f"{', compiled' if cfg.compile else ''})" + (f" × {world} processes" if world > 1 else "")
                 + f": {t.describe()}")

    # -- the iterations -----------------------------------------------------------------
    def _loop(self) -> list[dict]:
        t, cfg = self.t, self.cfg
        self.t_start = time.perf_counter()
        self.board = Board(self.out, t.iteration) if cfg.tensorboard and self.main else None
        self.bar = Progress(t.total_iters, "iter", done=t.iteration, every=cfg.log_every, log=self.log,
                            enabled=self.show)
        self.readout = LossReadout(t.device, len(t.loss_keys), t.loss_text)
        try:
            with StopSignals() as signals:
                if t.iteration == 0 and not self.rows:  # a run killed just after its first checkpoint has this row
                    self._evaluate(None)
                while t.iteration < t.total_iters:
                    self._iterate()
                    if t.iteration < t.total_iters and stop_requested(signals, t.iteration, self.ranks, t.device):
                        self._stop(signals.signum or signal.SIGTERM)
        finally:
            self.bar.clear()
            if self.board is not None:
                self.board.close()
        return self.rows

    def _iterate(self) -> None:
        t = self.t
        self.acc += t.step()
        self.n_acc += 1
        if t.iteration % self.cfg.eval_every == 0 or t.iteration == t.total_iters or t.stage_ends_at(t.iteration):
            self._evaluate(self.acc / self.n_acc)
            self.acc.zero_()
            self.n_acc = 0
        elif self.bar.due():
            self.readout.push(self.acc / self.n_acc)
            self.bar.show(t.iteration, self.readout.text())

    def seconds(self) -> float:
        """Training time of the run so far, earlier sessions included (s)."""
        return self.seconds_before + time.perf_counter() - self.t_start

    def _evaluate(self, losses: torch.Tensor | None) -> None:
        """Score the test patches; write the metric row, the sample, TensorBoard, checkpoints."""
        t = self.t
        if losses is not None:
            losses = mean_over_ranks(losses, self.ranks)
        if not self.main:
            return
        row = {"iteration": t.iteration, **(dict(zip(t.loss_keys, losses.tolist())) if losses is not None else {}),
               **t.evaluate(), "seconds": round(self.seconds(), 2)}
        # best.pt is the best of the evaluations whose PSNRs compare (a learned ISP's: the same level)
        self.saver.best = max((float(r["test_psnr"]) for r in self.rows
                               if r.get("test_psnr") not in (None, "") and t.best_scope(r) == t.best_scope(row)),
                              default=-np.inf)
        self.rows.append(row)
        write_rows(self.out / "metrics.csv", self.rows, t.metric_fields)
        sample = t.sample_image()
        write_image(self.out / "samples" / f"{t.iteration}.png", sample)
        if self.board is not None:
            self.board.add(row, sample)
        self.saver.save_evaluation(t, row["test_psnr"], self.seconds())
        self.bar.say(f"iter {t.iteration}: {t.score_text(row)}")

    def _stop(self, signum: int) -> None:
        """Save ``last.pt`` with the running sums and raise :class:`Interrupted`."""
        if self.main:
            self.saver.save_last(self.t, {"sum": self.acc.detach().cpu().clone(), "n": self.n_acc}, self.seconds())
        self.bar.clear()
        raise Interrupted(signum, f"{signal.Signals(signum).name}: stopped after iteration {self.t.iteration} and "
                                  f"saved {self.saver.last}. To resume, run: {self.resume_command}",
                          self.resume_command)
