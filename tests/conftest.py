import os
import sys

# pytest-xdist (README's command: -n 2) runs a test file per core, each on one thread: two
# threads per worker would oversubscribe the cores, and small tensors gain little from a second
# (the controller's choice is inherited by the workers: the marker lets a worker choose again)
if os.environ.get("OMP_NUM_THREADS") in (None, os.environ.get("DPEDKIT_TEST_THREADS")):
    os.environ["OMP_NUM_THREADS"] = os.environ["DPEDKIT_TEST_THREADS"] = \
        "1" if "PYTEST_XDIST_WORKER" in os.environ else "2"
if "torch" in sys.modules:        # imported before this file (by a plugin): its pool is already sized
    sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from collections import Counter  # noqa: E402  (the thread count is set before numpy/torch load)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dpedkit.imageio import write_image  # noqa: E402
from dpedkit.testing.synth import sample_images, synthetic_pair  # noqa: E402
from tests.helpers import upscaled  # noqa: E402


@pytest.fixture(scope="session")
def samples():
    return sample_images()


@pytest.fixture
def make_pair_files(samples):
    """Write raw/phone/<name>.jpg and raw/dslr/<name>.jpg from a sample; returns H."""
    def make(raw, name, sample="coffee", seed=0, stem=None):
        dslr = upscaled(samples[sample])
        phone, H = synthetic_pair(dslr, 0.6, np.random.default_rng(seed))
        write_image(raw / "phone" / f"{stem or name}.jpg", phone)
        write_image(raw / "dslr" / f"{name}.jpg", dslr)
        return H
    return make


# what the reliability tests checked, printed at the end of the run (tests/test_reliability.py);
# each count is added where the check it counts was made, from what that check saw
LEDGER: Counter = Counter()


@pytest.fixture(scope="session")
def ledger():
    return LEDGER


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):          # an xdist worker: hand its counts to the controller
        session.config.workeroutput["ledger"] = dict(LEDGER)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    LEDGER.update(getattr(node, "workeroutput", {}).get("ledger", {}))


def pytest_terminal_summary(terminalreporter):
    if any(LEDGER.values()):
        terminalreporter.write_sep("-", "reliability: " + ", ".join(f"{v} {k}" for k, v in sorted(LEDGER.items()) if v))
