"""enhance is resumable: the same model and options skip a photo, a changed model, option or
input redoes it (the model's weights are fingerprinted, not just its path)."""

import torch

from dpedkit.enhance.stage import EnhanceOptions, enhance_paths
from dpedkit.imageio import write_image
from dpedkit.layout import read_records
from dpedkit.model.networks import Generator


def save_model(path, seed):
    g = Generator().eval()
    torch.manual_seed(seed)
    for p in g.parameters():
        p.data.normal_(0, 0.05)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"generator": g.state_dict(), "iteration": seed}, path)


def test_model_change_redoes_the_photo_and_the_same_model_skips_it(tmp_path, samples):
    model = tmp_path / "run" / "checkpoints" / "last.pt"
    save_model(model, 1)
    src = tmp_path / "in"
    write_image(src / "a.png", samples["coffee"][:64, :80])
    write_image(src / "b.png", samples["chelsea"][:64, :80])
    out = tmp_path / "out"
    opts = EnhanceOptions(device="cpu", format="png")
    quiet = lambda *_: None  # noqa: E731
    first = enhance_paths(tmp_path / "run", [src], out, opts, log=quiet)
    assert (first.counts["ok"], first.skipped) == (2, 0)
    before = (out / "a.png").read_bytes()
    same = enhance_paths(tmp_path / "run", [src], out, opts, log=quiet)
    assert (same.counts["ok"], same.skipped) == (2, 2)                 # same model: skipped
    save_model(model, 2)                                               # retrained in place: same path
    changed = enhance_paths(tmp_path / "run", [src], out, opts, log=quiet)
    assert changed.skipped == 0 and changed.counts["ok"] == 2          # model change: redone
    assert (out / "a.png").read_bytes() != before
    quality = enhance_paths(tmp_path / "run", [src], out, EnhanceOptions(device="cpu", format="png", tile=48, overlap=16),
                            log=quiet)
    assert quality.skipped == 0                                        # option change: redone
    write_image(src / "b.png", samples["astronaut"][:64, :80])         # input change: only b redone
    again = enhance_paths(tmp_path / "run", [src], out, EnhanceOptions(device="cpu", format="png", tile=48, overlap=16),
                          log=quiet)
    assert again.skipped == 1
    recs = read_records(out / "manifest.jsonl")
    assert set(recs) == {"a", "b"} and all(r["status"] == "ok" for r in recs.values())
    (out / "a.png").unlink()                                           # a missing output: redone
    last = enhance_paths(tmp_path / "run", [src], out, EnhanceOptions(device="cpu", format="png", tile=48, overlap=16),
                         log=quiet)
    assert last.skipped == 1 and (out / "a.png").is_file()
