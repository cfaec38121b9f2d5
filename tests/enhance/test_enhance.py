"""The TF checkpoint reader, official-model import, whole-photo enhancement and evaluate."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dpedkit.cli import main
from dpedkit.enhance.stage import enhance_array
from dpedkit.imageio import read_image, write_image
from dpedkit.metrics import psnr
from dpedkit.model.checkpoint import CheckpointError
from dpedkit.model.generator import load_generator, official_state_dict
from dpedkit.model.inference import EnhanceError, enhance_tiled, enhance_whole, generate, prepare, tile_starts, to_tensor
from dpedkit.model.networks import Generator
from dpedkit.model.tfbundle import BundleError, list_bundle, masked_crc32c, read_bundle

OFFICIAL = Path(os.environ.get("DPEDKIT_OFFICIAL") or Path(__file__).resolve().parents[3] / "shared" / "dped_official")
needs_official = pytest.mark.skipif(not (OFFICIAL / "iphone_orig.index").is_file(),
                                    reason="the official DPED checkpoints are not in ../shared/dped_official")
CPU = torch.device("cpu")


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


def test_lean_forward_equals_the_module(samples):
    g = Generator().eval()
    torch.manual_seed(0)
    for p in g.parameters():
        p.data.normal_(0, 0.05)
    x = to_tensor(samples["coffee"][:97, :131], CPU)
    with torch.no_grad():
        ref = g(x.contiguous())
    torch.testing.assert_close(generate(g, x), ref, atol=2e-6, rtol=0)


@needs_official
def test_official_iphone_model_enhances_a_real_photo(samples):
    g, what = load_generator(OFFICIAL / "iphone_orig")
    assert "official" in what
    img = samples["astronaut"]
    x = to_tensor(img, CPU)
    out = generate(g, x)
    assert torch.isfinite(out).all()
    enhanced = enhance_whole(g, img, CPU)
    p = float(psnr(torch.from_numpy(enhanced).float() / 255, torch.from_numpy(img).float() / 255))
    assert 12 < p < 30, p                      # a visible enhancement, not noise, not the identity
    assert enhanced.mean() > img.mean() + 5    # the iPhone model brightens, as in the paper's figures
    # half precision stays within a couple of 8-bit levels of fp32
    half = enhance_whole(g.to(torch.bfloat16), img, CPU, torch.bfloat16)
    assert np.abs(half.astype(int) - enhanced).mean() < 1.5


def test_tiling_is_explicitly_approximate(samples):
    g = Generator().eval()
    torch.manual_seed(1)
    for p in g.parameters():
        p.data.normal_(0, 0.05)
    img = samples["coffee"][:200, :300]
    whole = enhance_whole(g, img, CPU)
    assert np.array_equal(enhance_tiled(g, img, CPU, tile=512, overlap=32), whole)   # one tile: exact
    tiled = enhance_tiled(g, img, CPU, tile=128, overlap=32)
    assert tiled.shape == whole.shape
    diff = np.abs(tiled.astype(int) - whole)
    assert 0 < diff.mean() < 20
    assert tile_starts(300, 128, 32) == [0, 96, 172] and tile_starts(100, 128, 32) == [0]


def test_a_photo_that_does_not_fit_says_so(samples, monkeypatch):
    from dpedkit.model import inference
    monkeypatch.setattr(inference, "available_bytes", lambda device: 10 << 20)
    with pytest.raises(EnhanceError, match="--tile"):
        enhance_whole(Generator().eval(), samples["coffee"], CPU)


def test_enhance_cli_matches_the_library_and_survives_bad_files(tmp_path, samples):
    ck_run = tmp_path / "run"
    g = Generator().eval()
    torch.manual_seed(2)
    for p in g.parameters():
        p.data.normal_(0, 0.05)
    (ck_run / "checkpoints").mkdir(parents=True)
    torch.save({"generator": g.state_dict(), "iteration": 7}, ck_run / "checkpoints" / "last.pt")
    src = tmp_path / "in"
    write_image(src / "a.png", samples["coffee"][:150, :200])
    exif = Image.Exif()
    exif[0x0112] = 6                                        # stored sideways, shown upright
    Image.fromarray(np.rot90(samples["chelsea"][:120, :160], 1)).save(src / "b c.jpg", quality=98, exif=exif)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["enhance", str(ck_run), str(src), "-o", str(out), "--format", "png",
                                  "--side-by-side"])
    assert r.exit_code == 1, r.output                       # one photo failed
    assert "3 photos: 2 ok, 1 failed" in r.output
    g = prepare(load_generator(ck_run)[0], CPU)             # the library call, as a user would make it
    for name in ("a", "b c"):
        img = read_image(src / (name + (".png" if name == "a" else ".jpg")))
        got = read_image(out / f"{name}.png")
        assert np.array_equal(got, enhance_array(g, img, CPU, torch.float32))
        assert read_image(out / f"{name}_before_after.png").shape == (img.shape[0], 2 * img.shape[1], 3)
    assert read_image(out / "b c.png").shape[:2] == (120, 160)   # EXIF orientation honoured
    r = CliRunner().invoke(main, ["enhance", str(ck_run), str(src / "a.png"), "-o", str(out), "--format", "png"])
    assert r.exit_code == 0 and "1 already done" in r.output
    r = CliRunner().invoke(main, ["enhance", str(tmp_path / "nothing"), str(src), "-o", str(out)])
    assert r.exit_code == 2 and "no checkpoint" in r.output


@needs_official
def test_evaluate_reports_model_and_identity(tmp_path, samples):
    from tests.helpers import make_dataset
    data = make_dataset(tmp_path / "ds", samples, n_train=1, n_test=60, size=40)
    out = tmp_path / "scores.json"
    r = CliRunner().invoke(main, ["evaluate", str(OFFICIAL / "iphone_orig"), str(data), "--phone", "p",
                                  "--dslr", "d", "-o", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["patches"] == 60 and set(res["enhanced"]) == {"psnr", "ssim", "ms_ssim"}
    from dpedkit.train.data import load_split
    ph, ds = load_split(data / "p", "p", "d", "test", size=None)
    # identity PSNR: batches of 50 and 10, weighted by size
    direct = (50 * float(psnr(ph[:50] / 255, ds[:50] / 255)) + 10 * float(psnr(ph[50:] / 255, ds[50:] / 255))) / 60
    assert res["identity"]["psnr"] == pytest.approx(direct, abs=1e-4)
    assert "identity" in r.output and "enhanced" in r.output
    assert all(0 < res[k]["ms_ssim"] <= 1 for k in ("identity", "enhanced"))
