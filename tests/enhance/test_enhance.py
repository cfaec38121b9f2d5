"""``dpedkit enhance`` on a folder of photos: the library's result, bad files survived."""
import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from dpedkit.cli import main
from dpedkit.enhance.stage import enhance_array
from dpedkit.imageio import read_image, write_image
from dpedkit.model.generator import load_generator
from dpedkit.model.inference import prepare
from dpedkit.model.networks import Generator

CPU = torch.device("cpu")


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
