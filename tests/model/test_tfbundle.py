"""The TF checkpoint reader and the official DPED checkpoints' mapping onto our generator."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpedkit.model.checkpoint import CheckpointError
from dpedkit.model.generator import load_generator, official_state_dict
from dpedkit.model.networks import Generator
from dpedkit.model.tfbundle import BundleError, list_bundle, masked_crc32c, read_bundle

OFFICIAL = Path(os.environ.get("DPEDKIT_OFFICIAL") or Path(__file__).resolve().parents[3] / "shared" / "dped_official")
needs_official = pytest.mark.skipif(not (OFFICIAL / "iphone_orig.index").is_file(),
                                    reason="the official DPED checkpoints are not in ../shared/dped_official")


def official_shapes():
    shapes = {"generator/W1": (9, 9, 3, 64), "generator/b1": (64,), "generator/W12": (9, 9, 64, 3),
              "generator/b12": (3,)}
    shapes.update({f"generator/W{i}": (3, 3, 64, 64) for i in range(2, 12)})
    shapes.update({f"generator/b{i}": (64,) for i in range(2, 12)})
    shapes.update({"generator/Variable" + (f"_{i}" if i else ""): (64,) for i in range(16)})
    return shapes


@needs_official
@pytest.mark.parametrize("phone", ["iphone", "sony", "blackberry"])
def test_reads_every_official_variable(phone):
    entries, shards = list_bundle(OFFICIAL / f"{phone}_orig")
    assert shards == 1
    assert {k: e.shape for k, e in entries.items()} == official_shapes()
    assert all(e.dtype == "float32" for e in entries.values())
    tensors = read_bundle(OFFICIAL / f"{phone}_orig.index")          # the .index path works as well
    assert sum(v.size for v in tensors.values()) == 401_475
    assert all(np.isfinite(v).all() and v.dtype == np.float32 for v in tensors.values())
    # shift (even) around 0 and scale (odd) around 1: the creation order the mapping relies on
    assert abs(np.mean([tensors[f"generator/Variable_{i}"].mean() for i in range(2, 16, 2)])) < 0.2
    assert abs(np.mean([tensors[f"generator/Variable_{i}"].mean() for i in range(1, 16, 2)]) - 1) < 0.2


def test_crc32c_known_value():
    from dpedkit.model.tfbundle import crc32c
    assert crc32c(b"123456789") == 0xE3069283          # the CRC-32C check value
    assert masked_crc32c(b"") == 0xA282EAD8             # mask of 0


@pytest.fixture
def bundle_copy(tmp_path):
    if not (OFFICIAL / "iphone_orig.index").is_file():
        pytest.skip("official checkpoints absent")
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(OFFICIAL / f"iphone_orig{suffix}", tmp_path / f"m{suffix}")
        (tmp_path / f"m{suffix}").chmod(0o644)
    return tmp_path / "m"


def _edit(path, fn):
    path.write_bytes(fn(bytearray(path.read_bytes())))


@pytest.mark.parametrize("damage, message", [
    (lambda d, i: _edit(d, lambda b: b[:1000] + bytes([b[1000] ^ 0xFF]) + b[1001:]), "checksum mismatch in generator/"),
    (lambda d, i: _edit(d, lambda b: b[:-100]), "past the end of the file"),
    (lambda d, i: d.unlink(), "cannot read"),
    (lambda d, i: _edit(i, lambda b: b[:300] + bytes([b[300] ^ 0x01]) + b[301:]), "checksum mismatch in a table block"),
    (lambda d, i: _edit(i, lambda b: b[:-20]), "bad magic"),
    (lambda d, i: _edit(i, lambda b: b[:10]), "too short"),
    (lambda d, i: _edit(i, lambda b: bytes(len(b))), "bad magic"),
    (lambda d, i: i.write_bytes(b"PK\x03\x04 a zip file, not a checkpoint index" * 3), "bad magic"),
])
def test_damaged_checkpoints_fail_cleanly(bundle_copy, damage, message):
    damage(bundle_copy.with_name("m.data-00000-of-00001"), bundle_copy.with_name("m.index"))
    with pytest.raises(BundleError, match=message):
        read_bundle(bundle_copy)
    with pytest.raises(CheckpointError):          # what the CLI catches
        load_generator(bundle_copy)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_index_never_crashes(bundle_copy, data):
    index = (OFFICIAL / "iphone_orig.index").read_bytes()
    n = data.draw(st.integers(1, 8))
    b = bytearray(index)
    for _ in range(n):
        pos = data.draw(st.integers(0, len(b) - 1))
        b[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        b = b[:data.draw(st.integers(0, len(b)))]
    bundle_copy.with_name("m.index").write_bytes(bytes(b))
    try:
        read_bundle(bundle_copy)
    except BundleError:
        pass


def test_synthetic_bundles_roundtrip_and_nonsense_entries_are_bounded(tmp_path):
    from tests.model.bundle_writer import write_bundle
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b/c": np.array([1, -2], np.int64),
               "h": np.array([0.5, -1.25], np.float16), "s": np.zeros((), np.float64)}
    write_bundle(tmp_path / "ok", tensors)
    got = read_bundle(tmp_path / "ok")
    assert set(got) == set(tensors)
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v)
    bf = np.array([1.5, -3.0], np.float32)                      # bfloat16 = the top half of a float32
    write_bundle(tmp_path / "bf", {"x": (bf.view(np.uint32) >> 16).astype(np.uint16)},
                 overrides={"x": {"dtype": "bfloat16"}})
    assert np.array_equal(read_bundle(tmp_path / "bf")["x"], bf)
    write_bundle(tmp_path / "str", {"x": np.zeros(3, np.uint8)}, overrides={"x": {"dtype": "string"}})
    assert read_bundle(tmp_path / "str") == {}                  # strings are left out, not misread
    cases = [({"shape": (1 << 40, 1 << 30)}, "declares shape"),     # a huge declared shape: no allocation
             ({"size": 1 << 50, "shape": (1 << 48,)}, "past the end"),
             ({"offset": 1 << 40}, "past the end"),
             ({"shard": 3}, "bad shard count"),
             ({"crc": 12345}, "checksum mismatch in a")]
    for override, message in cases:
        write_bundle(tmp_path / "bad", {"a": tensors["a"]}, overrides={"a": override})
        with pytest.raises(BundleError, match=message):
            read_bundle(tmp_path / "bad")


def test_variables_that_do_not_fit_are_named():
    g = Generator()
    variables = {}
    for k, shape in official_shapes().items():
        variables[k] = np.zeros(shape, np.float32)
    assert set(official_state_dict(variables)) == set(g.state_dict()) - {
        k for k in g.state_dict() if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    del variables["generator/W3"]
    variables["generator/b5"] = np.zeros(32, np.float32)
    variables["generator/W13"] = np.zeros((3, 3, 3, 3), np.float32)
    with pytest.raises(CheckpointError) as e:
        official_state_dict(variables)
    msg = str(e.value)
    assert "missing generator/W3" in msg and "unexpected generator/W13" in msg and "generator/b5 [32]" in msg
