"""The training step's peak memory, estimated before the first step, and the check that it fits.

The estimate (bytes, per process) is what one iteration adds to what the trainer already
holds (networks, data):

- the activations autograd keeps for the backward passes, counted exactly by running the
  generator step's and the discriminator step's forward passes on the ``meta`` device (shapes
  only: no memory, no arithmetic, no random numbers drawn) with saved-tensor hooks, the
  larger of the two steps, times :data:`ACTIVATION_FACTOR` for the transients (temporaries
  of the forward pass, gradients of activations, convolution workspaces, the VGG features of
  the DSLR batch);
- the gradients and both Adam moments of the generator and the discriminator (3 × weights);
- the two float batches (phone and DSLR) of each step.

Calibration (this CPU, 1 thread, fp32, first step in a fresh process, peak RSS growth read
from ``/proc/self/status`` VmHWM after resetting it): measured / estimated was 0.89–1.10
for 32–64 px patches, batches 4–16, with and without VGG (tests/train/test_memory.py checks
a factor of 1.5 either way). Under bf16 autocast (CUDA's default) the count is of fp32
activations: an over-estimate, on the safe side; it was not calibrated on a GPU.

Available memory: on CUDA the device's free memory (``mem_get_info``) plus what torch's
caching allocator holds unused; on Linux ``MemAvailable`` of ``/proc/meminfo``, lowered to
the cgroup's limit minus its usage when one is set (containers, Slurm); elsewhere
``os.sysconf``'s available pages.
"""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path

import torch

from dpedkit.train.config import TrainError
from dpedkit.train.isp_losses import IspLoss

ACTIVATION_FACTOR = 1.5
ISP_PROBE_SIDE = {"pynet": 64, "microisp": 160}     # mosaic px: the smallest each network takes
GIB = 2 ** 30


def _meta_twin(t):
    """A shallow copy of trainer ``t`` whose networks live on the meta device."""
    m = copy.copy(t)
    m.G = copy.deepcopy(t.G).to("meta")
    m.D = copy.deepcopy(t.D).to("meta")
    m.vgg = copy.deepcopy(t.vgg).to("meta") if t.vgg is not None else None
    m.kernel = t.kernel.to("meta")
    m.G_step, m.D_step, m.D_judge = m.G, m.D, m.D
    m._autocast = contextlib.nullcontext
    return m


def _saved_bytes(fn, exclude: set[int]) -> int:
    """Bytes of the distinct tensors autograd saves while ``fn`` runs (``exclude``: ids of
    the weights, which are held anyway)."""
    seen: dict[int, int] = {}

    def pack(x):
        if id(x) not in exclude:
            seen[id(x)] = x.numel() * x.element_size()
        return x
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        fn()
    return sum(seen.values())


def _weight_bytes(*modules) -> int:
    return sum(p.numel() * p.element_size() for m in modules if m is not None for p in m.parameters())


def step_bytes(t, batch: int) -> int:
    """Estimated peak bytes one iteration of trainer ``t`` adds with a per-process batch of ``batch``."""
    m = _meta_twin(t)
    exclude = {id(p) for net in (m.G, m.D, m.vgg) if net is not None for p in net.parameters()}
    side = t.train_phone.shape[-1]
    phone = torch.empty(batch, 3, side, side, device="meta")
    adv = torch.empty(batch, 1, device="meta")
    activations = max(_saved_bytes(lambda: m.g_losses(phone, phone, adv), exclude),
                      _saved_bytes(lambda: m.d_losses(phone, phone, adv), exclude))
    state = 3 * _weight_bytes(t.G, t.D)            # gradients + Adam's two moments
    batches = 2 * 2 * batch * 3 * side * side * 4  # phone and DSLR floats, two steps
    return int(ACTIVATION_FACTOR * activations) + state + batches


def isp_step_bytes(t) -> int:
    """Estimated peak bytes the largest step of the learned-ISP trainer ``t``'s stages still to
    come adds, per process.

    The activations autograd saves are counted on real CPU tensors of one small patch (the
    smallest side the network takes, :data:`ISP_PROBE_SIDE`) at each level and scaled by the
    patch's area and the stage's batch: every activation of these fully convolutional
    networks has a size proportional to the input's area (meta tensors, as for DPED, cost
    ~1 s per PyNET pass in Python). Then × :data:`ACTIVATION_FACTOR`, plus the gradients and
    Adam moments of the network and the float batches."""
    h, w = t.train_set.read_pair(0)[0].shape            # the mosaic patch
    side = ISP_PROBE_SIDE[t.recipe.model]
    net = copy.deepcopy(t.net).float().cpu()
    vgg = copy.deepcopy(t.vgg).float().cpu() if t.vgg is not None else None
    exclude = {id(p) for m in (net, vgg) if m is not None for p in m.parameters()}
    raw = torch.rand(1, 4, side // 2, side // 2)
    need, per_level = 0, {}
    for s in t.recipe.stages[t.stage:]:
        if s.level not in per_level:
            net.level = s.level
            weights = s.weights if vgg is not None else s.weights.without_content()
            loss = IspLoss(weights, vgg if weights.content > 0 else None)
            target = torch.rand(1, 3, side >> s.level, side >> s.level)
            per_level[s.level] = _saved_bytes(lambda: loss.terms(net(raw), target), exclude) * h * w / side ** 2
        batch = -(-s.batch_size // t.ranks.world)
        batches = 4 * batch * (4 * h * w // 4 + 3 * (h >> s.level) * (w >> s.level))
        need = max(need, int(ACTIVATION_FACTOR * batch * per_level[s.level]) + batches)
    return need + 3 * _weight_bytes(t.net)


def _cgroup_room() -> int | None:
    """The cgroup's memory limit minus its usage (v2, then v1), or None without a limit."""
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            lim, used = Path(limit).read_text().strip(), int(Path(usage).read_text())
        except (OSError, ValueError):
            continue
        if lim.isdigit() and int(lim) < 2 ** 60:   # "max", or v1's huge number: no limit
            return max(int(lim) - used, 0)
    return None


def available_bytes(device: torch.device) -> int | None:
    """Memory a training step may still use on ``device`` (None: unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    room = _cgroup_room()
    return avail if room is None else min(avail, room)


def check_memory(t, log, ignore: bool = False) -> int:
    """Refuse (:class:`TrainError`) a run whose step's estimated peak memory (the trainer's
    ``step_memory()``) exceeds what is available, saying what fits (its ``memory_terms``);
    with ``ignore`` warn instead. Processes of a CPU run share the machine's memory: all of
    them are counted. Returns the estimate (bytes)."""
    world = t.ranks.world if t.device.type != "cuda" else 1
    try:
        need = world * t.step_memory()
    except (NotImplementedError, RuntimeError) as e:   # an operation without a meta kernel: no estimate
        log(f"warning: cannot estimate the training step's memory ({type(e).__name__}: {e}); not checked")
        return 0
    avail = available_bytes(t.device)
    if avail is None or need <= avail:
        return need
    where = "GPU" if t.device.type == "cuda" else "RAM"
    what, advice = t.memory_terms(avail / world)
    msg = (f"{what} needs about {need / GIB:.1f} GiB (estimated) but {avail / GIB:.1f} GiB of {where} is available: "
           f"{advice} (--ignore-memory starts anyway)")
    if not ignore:
        raise TrainError(msg)
    log(f"warning: {msg}")
    return need
