"""What enhance's outputs carry: EXIF and ICC from the input, labelled before/after; where
evaluate writes; a folder of models is named, not mistaken for a run."""
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageCms

from dpedkit.cli import main
from dpedkit.model.generator import load_generator
from dpedkit.enhance.outputs import PhotoMetadata, add_metadata, read_metadata, side_by_side
from dpedkit.enhance.stage import enhance_array
from dpedkit.model.inference import prepare
from dpedkit.evaluate import default_json_path
from dpedkit.imageio import encode_image, read_image
from dpedkit.model.checkpoint import CheckpointError
from dpedkit.model.networks import Generator

CPU = torch.device("cpu")
EXIF_IFD, DATETIME_ORIGINAL, MAKE, MODEL, ORIENTATION = 0x8769, 0x9003, 0x010F, 0x0110, 0x0112


def make_run(folder: Path) -> Path:
    torch.manual_seed(0)
    (folder / "checkpoints").mkdir(parents=True)
    torch.save({"generator": Generator().state_dict(), "iteration": 1}, folder / "checkpoints" / "last.pt")
    return folder


def phone_jpeg(path: Path, img: np.ndarray) -> bytes:
    """A JPEG stored sideways (orientation 6) with camera, capture time and a Display P3-like profile."""
    exif = Image.Exif()
    exif[MAKE], exif[MODEL], exif[ORIENTATION] = "Apple", "iPhone 15", 6
    exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] = "2024:05:01 12:34:56"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()    # not sRGB: must survive as is
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.rot90(img, 1)).save(path, quality=97, exif=exif, icc_profile=icc)
    return icc


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_outputs_keep_exif_and_icc_with_orientation_normalised(tmp_path, samples, fmt):
    run = make_run(tmp_path / "run")
    img = samples["chelsea"][:96, :128]
    icc = phone_jpeg(tmp_path / "in" / "cat.jpg", img)
    r = CliRunner().invoke(main, ["enhance", str(run), str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                                  "--format", fmt, "--side-by-side"])
    assert r.exit_code == 0, r.output
    for name in (f"cat.{fmt}", f"cat_before_after.{fmt}"):
        with Image.open(tmp_path / "out" / name) as im:
            exif = im.getexif()
            assert exif[MODEL] == "iPhone 15" and exif[MAKE] == "Apple"
            assert exif[ORIENTATION] == 1                                    # stored upright, said upright
            assert exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] == "2024:05:01 12:34:56"
            assert im.info.get("icc_profile") == icc
    up = read_image(tmp_path / "in" / "cat.jpg")                              # upright, as enhance read it
    out = read_image(tmp_path / "out" / f"cat.{fmt}")
    assert out.shape == up.shape == (96, 128, 3)                              # not rotated a second time
    if fmt == "png":                                                          # metadata changes no pixel
        assert np.array_equal(out, enhance_array(prepare(load_generator(run)[0], CPU), up, CPU, torch.float32))


def test_metadata_insertion_leaves_pixels_alone_and_photos_without_metadata_alone(tmp_path, samples):
    img = samples["coffee"][:64, :80]
    meta = PhotoMetadata(exif=b"MM\x00*\x00\x00\x00\x08\x00\x00", icc=bytes(range(256)) * 300)   # 76.8 kB: 2 APP2 segments
    for suffix in (".jpg", ".png"):
        plain = encode_image(img, suffix)
        tagged = add_metadata(plain, meta)
        assert len(tagged) > len(plain) + (76_800 if suffix == ".jpg" else 10)   # PNG's iCCP is compressed
        a = np.array(Image.open(io.BytesIO(plain)))
        b = np.array(Image.open(io.BytesIO(tagged)))
        assert np.array_equal(a, b)
        assert Image.open(io.BytesIO(tagged)).info["icc_profile"] == meta.icc
        assert add_metadata(plain, PhotoMetadata()) == plain
    (tmp_path / "x.png").write_bytes(encode_image(img, ".png"))
    assert read_metadata(tmp_path / "x.png") == PhotoMetadata()


def test_side_by_side_is_labelled_only_in_its_corners(samples):
    a, b = samples["coffee"][:200, :300], samples["chelsea"][:200, :300]
    out = side_by_side(a, b)
    plain = np.concatenate([a, b], axis=1)
    changed = np.any(out != plain, axis=2)
    assert out.shape == plain.shape
    assert changed[:40, :100].mean() > 0.15 and changed[:40, 300:400].mean() > 0.15     # a label on each half
    assert not changed[60:].any() and not changed[:, 150:300].any()                    # nothing else touched


def test_a_folder_of_official_models_is_listed(tmp_path):
    folder = tmp_path / "models_orig"
    folder.mkdir()
    for p in ("iphone", "sony"):
        (folder / f"{p}_orig.index").write_bytes(b"")
        (folder / f"{p}_orig.data-00000-of-00001").write_bytes(b"")
    with pytest.raises(CheckpointError) as e:
        load_generator(folder)
    assert "folder of models" in str(e.value)
    assert str(folder / "iphone_orig") in str(e.value) and str(folder / "sony_orig") in str(e.value)
    assert "last.pt" not in str(e.value)
    r = CliRunner().invoke(main, ["enhance", str(folder), str(folder), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "sony_orig" in r.output
    with pytest.raises(CheckpointError, match="no checkpoint at"):              # an empty folder: as before
        load_generator(tmp_path)


def test_evaluate_writes_one_file_per_model_into_the_run_folder(tmp_path):
    run = make_run(tmp_path / "runs" / "r1")
    assert default_json_path(run, "iphone") == run / "evaluate_iphone.json"
    assert default_json_path(run / "checkpoints" / "iter_500.pt", "iphone") == run / "evaluate_iphone_iter_500.json"
    assert default_json_path(Path("models_orig/iphone_orig"), "iphone") == Path("evaluate_iphone_iphone_orig.json")
    assert default_json_path(Path("models_orig/sony_orig.index"), "sony") == Path("evaluate_sony_sony_orig.json")
    assert default_json_path(run, "iphone", tmp_path) == tmp_path / "evaluate_iphone.json"       # -o a folder
    assert default_json_path(run, "iphone", tmp_path / "s.json") == tmp_path / "s.json"          # -o a file
    assert default_json_path(run, "iphone", "new_dir/") == Path("new_dir/evaluate_iphone.json")


@pytest.mark.parametrize("name,model,taken", [("canon_eos_6d.dng", "Canon EOS 6D", "2019:06:06 07:29:51"),
                                               ("DNG.dng", "Canon EOS 350D DIGITAL", "2005:08:03 18:59:18"),
                                               ("iphone_7.heic", "iPhone 7", "2018:09:10 12:16:13")])
def test_real_files_metadata_is_read_while_open_and_portable(name, model, taken):
    """Pillow reads the EXIF sub-IFD lazily: reading it after the file closed failed with
    "seek of closed file" on these DNGs. A RAW's IFD0 layout tags (strips, DNG tags) stay out."""
    from tests.test_camera_files import camera_file
    meta = read_metadata(camera_file(name))
    exif = Image.Exif()
    exif.load(b"Exif\x00\x00" + meta.exif)
    assert exif[MODEL] == model and exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] == taken
    assert exif.get(ORIENTATION, 1) == 1
    if name.endswith(".dng"):
        assert meta.icc is None and not {273, 279, 330, 50706} & set(exif)   # strips, sub-IFDs, DNGVersion
    out = add_metadata(encode_image(np.zeros((8, 8, 3), np.uint8), ".jpg"), meta)
    with Image.open(io.BytesIO(out)) as im:
        assert im.getexif()[MODEL] == model
