"""model_files/model_fingerprint: what enhance hashes to decide a model changed."""

import numpy as np
import torch

from dpedkit.model.device import DeviceError, resolve_device
from dpedkit.model.generator import model_files, model_fingerprint
from tests.model.bundle_writer import write_bundle


def test_fingerprint_follows_the_weights_of_each_kind_of_model(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"generator": {"w": torch.zeros(3)}}, run / "checkpoints" / "last.pt")
    assert model_files(run) == [run / "checkpoints" / "last.pt"]
    assert model_files(run / "checkpoints" / "last.pt") == [run / "checkpoints" / "last.pt"]
    before = model_fingerprint(run)
    assert model_fingerprint(run) == before
    torch.save({"generator": {"w": torch.ones(3)}}, run / "checkpoints" / "last.pt")
    assert model_fingerprint(run) != before
    write_bundle(tmp_path / "tf", {"x": np.zeros(4, np.float32)})
    (tmp_path / "tf.data-00001-of-00002").write_bytes(b"")          # a second shard is hashed too
    files = model_files(tmp_path / "tf")
    assert [f.name for f in files] == ["tf.index", "tf.data-00000-of-00001", "tf.data-00001-of-00002"]
    assert model_files(tmp_path / "tf.index") == files
    fp = model_fingerprint(tmp_path / "tf")
    files[-1].write_bytes(files[-1].read_bytes() + b"\0")          # one shard changed
    assert model_fingerprint(tmp_path / "tf") != fp


def test_device_choice():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        try:
            resolve_device("cuda")
        except DeviceError as e:
            assert "no CUDA device" in str(e)
        else:
            raise AssertionError("cuda without a GPU must be refused")
