import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The training tests' networks run on batches of a few 20-24 px patches, where torch's
    intra-op threads cost more than they save (on a busy 2-core machine a 3x3 conv took 50 ms
    with 2 threads and 1.3 ms with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
