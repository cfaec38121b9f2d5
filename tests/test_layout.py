"""The on-disk contracts in dpedkit.layout: camera names recorded once and read back."""

import pytest

from dpedkit.layout import Cameras, DpedLayout, LayoutError, dataset_cameras, resolve_cameras


def test_cameras_round_trip_and_win_over_guessing(tmp_path):
    for name in ("ph", "big", "previews"):
        (tmp_path / name).mkdir()
    with pytest.raises(LayoutError, match="--phone NAME --dslr NAME"):
        resolve_cameras(tmp_path, None, None, ignore=("previews",))     # neither is called dslr/canon
    Cameras("ph", "big").write(tmp_path)
    assert Cameras.read(tmp_path) == Cameras("ph", "big", "canon")
    assert resolve_cameras(tmp_path, None, None) == ("ph", "big")
    assert resolve_cameras(tmp_path, "big", "ph") == ("big", "ph")       # explicit options win
    (tmp_path / "dataset.json").write_text("{not json")
    assert Cameras.read(tmp_path) is None


def test_dataset_cameras_from_metadata_folder_names_or_defaults(tmp_path):
    layout = DpedLayout(tmp_path / "ds" / "iphone", "iphone")
    for split in ("train", "test"):
        for cam in ("phone", "dslr"):
            layout.patch_dir(split, cam).mkdir(parents=True)
    assert layout.patch(split="test", camera="dslr", index=3) == tmp_path / "ds/iphone/test_data/patches/canon/3.jpg"
    # the published DPED download: no metadata, the DSLR folder is canon
    assert dataset_cameras(tmp_path / "ds") == (layout.root, "iphone", "canon")
    assert dataset_cameras(layout.root) == (layout.root, "iphone", "canon")
    Cameras("iphone", "dslr", "canon").write(layout.root)
    assert dataset_cameras(tmp_path / "ds", "iphone", "dslr")[1:] == ("iphone", "canon")   # the user's own name
    with pytest.raises(LayoutError, match=r"has no folder other/ \(it has: canon/, iphone/\); dataset.json records "
                                          r"the phone 'iphone' and the DSLR 'dslr' \(folder 'canon'\)"):
        dataset_cameras(tmp_path / "ds", dslr="other")
    for split in ("train", "test"):
        (layout.split_dir(split) / "other").mkdir()
    assert dataset_cameras(tmp_path / "ds", dslr="other")[2] == "other"    # a folder of that name wins
    (tmp_path / "ds" / "sony" / "training_data").mkdir(parents=True)   # two phones: which one?
    with pytest.raises(LayoutError, match="--phone"):
        dataset_cameras(tmp_path / "ds")
    assert dataset_cameras(tmp_path / "ds", "iphone")[1:] == ("iphone", "canon")


def test_train_with_a_camera_folder_the_dataset_lacks_says_which_folders_it_has(tmp_path):
    from click.testing import CliRunner
    from dpedkit.cli import main
    layout = DpedLayout(tmp_path / "ds" / "iphone", "iphone")
    for split in ("train", "test"):
        for cam in ("phone", "dslr"):
            layout.patch_dir(split, cam).mkdir(parents=True)
    Cameras("iphone", "sony", "canon").write(layout.root)
    r = CliRunner().invoke(main, ["train", str(tmp_path / "ds"), "--dslr", "nikon", "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "has no folder nikon/ (it has: canon/, iphone/)" in r.output, r.output
    assert not (tmp_path / "run").exists()
