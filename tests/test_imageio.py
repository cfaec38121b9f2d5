import cv2
import numpy as np
import pytest
from PIL import Image

from dpedkit.fs import remove_stale_temps
from dpedkit.imageio import ImageReadError, _jpeg_truncated, encode_image, read_image, write_image


@pytest.fixture
def rgb(samples):
    return samples["coffee"]


def test_roundtrip_png_is_rgb_and_lossless(tmp_path, rgb):
    write_image(tmp_path / "a.png", rgb)
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    np.testing.assert_array_equal(out, rgb)


def test_16bit_is_scaled_not_truncated(tmp_path, rgb):
    img16 = rgb.astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "a.png"), img16[..., ::-1])
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgb)


def test_grayscale_and_alpha_become_rgb(tmp_path, rgb):
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    out = read_image(tmp_path / "g.png")
    assert out.shape == rgb.shape
    np.testing.assert_array_equal(out[..., 0], gray)
    np.testing.assert_array_equal(out[..., 2], gray)
    bgra = np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 128, np.uint8)])
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgb)


@pytest.mark.parametrize("orientation,k", [(6, 1), (8, -1), (3, 2)])
def test_exif_orientation_is_applied(tmp_path, rgb, orientation, k):
    stored = np.ascontiguousarray(np.rot90(rgb, k))  # what the sensor wrote
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "r.jpg", quality=98, exif=exif)
    out = read_image(tmp_path / "r.jpg")
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).mean() < 3


def test_unreadable_inputs_raise_clear_errors(tmp_path, rgb):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image at all")
    data = encode_image(rgb, ".jpg")
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "short.jpg").write_bytes(data[:-200])
    png = encode_image(rgb, ".png")
    (tmp_path / "trunc.png").write_bytes(png[: len(png) // 2])
    expected = {"empty.jpg": "empty", "text.jpg": "not an image", "trunc.jpg": "truncated|not an image", "short.jpg": "truncated|not an image",
                "trunc.png": "not an image|cannot decode", "missing.jpg": "cannot read"}
    for name, words in expected.items():
        with pytest.raises(ImageReadError, match=words):
            read_image(tmp_path / name)


def test_truncation_check_sees_past_an_embedded_thumbnail(rgb):
    # an EXIF thumbnail is a JPEG with its own end-of-image marker inside an APP1 segment
    thumb = encode_image(rgb[::8, ::8], ".jpg")
    app1 = b"Exif\0\0" + thumb
    main = encode_image(rgb, ".jpg")
    full = main[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + main[2:]
    assert not _jpeg_truncated(np.frombuffer(full, np.uint8))
    assert _jpeg_truncated(np.frombuffer(full[:-300], np.uint8))


def test_atomic_write_leaves_no_temp_and_cleanup_removes_stale(tmp_path, rgb):
    write_image(tmp_path / "sub" / "x.jpg", rgb)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.jpg"]
    (tmp_path / "sub" / ".dpedkit-tmp-abc.png").write_bytes(b"partial")
    assert remove_stale_temps(tmp_path) == 1
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.jpg"]


def test_outputs_get_the_usual_permissions(tmp_path, rgb):
    import os
    mask = os.umask(0o022)
    try:
        from dpedkit import fs
        write_image(tmp_path / "p.png", rgb)
        assert (tmp_path / "p.png").stat().st_mode & 0o777 == fs.FILE_MODE   # not mkstemp's 0600
        assert fs.FILE_MODE & 0o044                                          # readable by others
    finally:
        os.umask(mask)
