"""The learned-ISP recipes as data: which network, and per training stage the level, the
length, the batch size, the learning rate and the loss weights. The trainer reads them; it
holds no recipe numbers of its own.

PyNET (aiff22/PyNET-PyTorch, README "Training the model" and ``train_model.py``): levels
trained one after another from the coarsest (5) to full resolution (0), each starting from
the previous level's weights (``load_state_dict(strict=False)``: the same network, the
finer layers new), each with a fresh Adam (PyTorch defaults, lr 5e-5), the data reshuffled
every epoch with ``drop_last``; epochs 8, 8, 17, 17, 25, 50 and batch sizes 50, 50, 50, 50,
16, 12 for levels 5 … 0 (the commands the authors give for four 16 GB V100s). An epoch is
``len(train) // batch`` steps. The TensorFlow PyNET counts iterations instead
(:data:`PYNET_TF`, for reference: 5k, 5k, 20k, 20k, 35k, 100k at batch 50).

MicroISP (aiff22/MicroISP) publishes the network and weights but no training code: its
recipe here is dpedkit's choice, one full-resolution stage with PyNET's level-0 loss and
PyNET's optimiser, stated as such.

``*_CPU_TEST``: reduced configurations for tests and CPU smoke runs (narrow PyNET, a few
steps per level, small batches, a larger learning rate).

``microisp-cpu-test`` differs from the published MicroISP so that a CPU test sees it learn
in seconds (tests/train/test_isp_train.py): 3 blocks a stage instead of 7 (one residual
group with its attention: every layer kind, about 2× cheaper a step; with this schedule on
the test's simulated patches the 7-block network reached 13.5 dB in 150 steps, the 3-block
one 22.8 dB against the quick rendering's 18.1); kernels from σ 0.2
instead of 1e-3 (from 1e-3 the output stays mid-grey for thousands of steps; 0.35 saturates
the tanh heads); batch 2 of 160 px mosaics (the smallest MicroISP takes); Adam at 5e-3 for
100 steps, then a second stage, a fresh Adam at 1e-3, for 50 (a step decay: at 5e-3 the
test PSNR swings by 1-2 dB from one evaluation to the next); MSE only (no VGG).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from dpedkit.train.isp_losses import MICROISP_WEIGHTS, PYNET_TF_WEIGHTS, PYNET_WEIGHTS, LossWeights


def _num(help: str, **bounds):
    return field(metadata={"help": help, **bounds})


@dataclass(frozen=True)
class Stage:
    """One training stage: ``epochs`` over the training set, or exactly ``steps`` when given."""
    level: int = _num("Output level trained (0 = full resolution, 5 = 1/32).", min=0, max=5)
    batch_size: int = _num("Patches per step.", min=1)
    lr: float = _num("Adam learning rate.", min=0, min_open=True)
    weights: LossWeights = field(metadata={"help": "Loss weights of this level."})
    epochs: int = field(default=0, metadata={"help": "Epochs (used when steps is 0).", "min": 0})
    steps: int = field(default=0, metadata={"help": "Optimisation steps; 0: epochs × len(train) // batch.",
                                            "min": 0})

    def num_steps(self, n_train: int) -> int:
        """Steps of this stage on ``n_train`` training patches (the original drops the last partial batch)."""
        return self.steps or self.epochs * (n_train // self.batch_size)


@dataclass(frozen=True)
class Recipe:
    """A network and its stages in training order; ``model_kwargs`` go to the network's class."""
    name: str
    model: str                                   # "pynet" | "microisp"
    stages: tuple[Stage, ...]
    model_kwargs: dict = field(default_factory=dict)
    source: str = ""

    def build_model(self) -> nn.Module:
        if self.model == "pynet":
            from dpedkit.model.pynet import PyNET
            return PyNET(level=self.stages[0].level, **self.model_kwargs)
        if self.model == "microisp":
            from dpedkit.model.microisp import MicroISP
            return MicroISP(**self.model_kwargs)
        raise ValueError(f"unknown ISP network {self.model!r}")

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(s.level for s in self.stages)


def _pynet_stages(epochs, batches, lr, weights, steps=(0,) * 6) -> tuple[Stage, ...]:
    return tuple(Stage(level, b, lr, weights[level], epochs=e, steps=s)
                 for level, e, b, s in zip((5, 4, 3, 2, 1, 0), epochs, batches, steps))


PYNET = Recipe("pynet", "pynet", _pynet_stages((8, 8, 17, 17, 25, 50), (50, 50, 50, 50, 16, 12), 5e-5, PYNET_WEIGHTS),
               source="aiff22/PyNET-PyTorch README and train_model.py")
PYNET_TF = Recipe("pynet-tf", "pynet",
                  _pynet_stages((0,) * 6, (50,) * 6, 5e-5, PYNET_TF_WEIGHTS,
                                steps=(5000, 5000, 20000, 20000, 35000, 100000)),
                  source="aiff22/PyNET (TensorFlow) utils.py NUM_DEFAULT_TRAIN_ITERS; reference only: its network "
                         "differs (transposed convolutions, tanh heads, no level-1 norm)")
MICROISP = Recipe("microisp", "microisp", (Stage(0, 12, 5e-5, MICROISP_WEIGHTS, epochs=50),),
                  source="dpedkit's choice (MicroISP publishes no training code): PyNET-PyTorch's level-0 stage")

_NO_VGG = {k: w.without_content() for k, w in PYNET_WEIGHTS.items()}
PYNET_CPU_TEST = Recipe("pynet-cpu-test", "pynet",
                        _pynet_stages((0,) * 6, (4,) * 6, 2e-3, _NO_VGG, steps=(20, 20, 20, 20, 20, 100)),
                        model_kwargs={"width": 2}, source="reduced PyNET for CPU tests (no VGG term)")
MICROISP_CPU_TEST = Recipe("microisp-cpu-test", "microisp",
                           (Stage(0, 2, 5e-3, LossWeights(1), steps=100), Stage(0, 2, 1e-3, LossWeights(1), steps=50)),
                           model_kwargs={"blocks": 3, "init_std": 0.2},
                           source="MicroISP reduced to 3 blocks a stage from sigma 0.2: 100 MSE steps at 5e-3, 50 at 1e-3")

RECIPES = {r.name: r for r in (PYNET, PYNET_TF, MICROISP, PYNET_CPU_TEST, MICROISP_CPU_TEST)}


def recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None
