"""A dataset built by ``dpedkit patches`` loads in the original DPED code.

``original_load_test_data`` and ``original_load_batch`` re-implement aiff22/DPED's
``load_dataset.py`` line by line (``scipy.misc.imread`` → PIL, the rest as written): paths are
string concatenations with the DSLR folder hard-coded as ``canon``, the number of patches is
the number of files in the phone folder, each patch is read as ``<i>.jpg``, flattened to
100*100*3 values, cast to float16 and divided by 255.
"""

import os

import numpy as np
from PIL import Image

from dpedkit.layout import Cameras, dataset_cameras
from dpedkit.patches.stage import PatchOptions, cut_patches
from dpedkit.train.data import load_split
from tests.helpers import make_aligned

PATCH_WIDTH, PATCH_HEIGHT = 100, 100
PATCH_SIZE = PATCH_WIDTH * PATCH_HEIGHT * 3


def imread(path):
    return np.asarray(Image.open(path))


def original_load_test_data(phone, dped_dir, IMAGE_SIZE):
    test_directory_phone = dped_dir + str(phone) + '/test_data/patches/' + str(phone) + '/'
    test_directory_dslr = dped_dir + str(phone) + '/test_data/patches/canon/'
    NUM_TEST_IMAGES = len([name for name in os.listdir(test_directory_phone)
                           if os.path.isfile(os.path.join(test_directory_phone, name))])
    test_data = np.zeros((NUM_TEST_IMAGES, IMAGE_SIZE))
    test_answ = np.zeros((NUM_TEST_IMAGES, IMAGE_SIZE))
    for i in range(0, NUM_TEST_IMAGES):
        I = np.asarray(imread(test_directory_phone + str(i) + '.jpg'))  # noqa: E741
        I = np.float16(np.reshape(I, [1, IMAGE_SIZE])) / 255  # noqa: E741
        test_data[i, :] = I
        I = np.asarray(imread(test_directory_dslr + str(i) + '.jpg'))  # noqa: E741
        I = np.float16(np.reshape(I, [1, IMAGE_SIZE])) / 255  # noqa: E741
        test_answ[i, :] = I
    return test_data, test_answ


def original_load_batch(phone, dped_dir, TRAIN_SIZE, IMAGE_SIZE):
    train_directory_phone = dped_dir + str(phone) + '/training_data/' + str(phone) + '/'
    train_directory_dslr = dped_dir + str(phone) + '/training_data/canon/'
    NUM_TRAINING_IMAGES = len([name for name in os.listdir(train_directory_phone)
                               if os.path.isfile(os.path.join(train_directory_phone, name))])
    if TRAIN_SIZE == -1:                     # if TRAIN_SIZE == -1 then load all images
        TRAIN_SIZE = NUM_TRAINING_IMAGES
        TRAIN_IMAGES = np.arange(0, TRAIN_SIZE)
    else:
        TRAIN_IMAGES = np.random.choice(np.arange(0, NUM_TRAINING_IMAGES), TRAIN_SIZE, replace=False)
    train_data = np.zeros((TRAIN_SIZE, IMAGE_SIZE))
    train_answ = np.zeros((TRAIN_SIZE, IMAGE_SIZE))
    i = 0
    for img in TRAIN_IMAGES:
        I = np.asarray(imread(train_directory_phone + str(img) + '.jpg'))  # noqa: E741
        I = np.float16(np.reshape(I, [1, IMAGE_SIZE])) / 255  # noqa: E741
        train_data[i, :] = I
        I = np.asarray(imread(train_directory_dslr + str(img) + '.jpg'))  # noqa: E741
        I = np.float16(np.reshape(I, [1, IMAGE_SIZE])) / 255  # noqa: E741
        train_answ[i, :] = I
        i += 1
    return train_data, train_answ


def test_the_original_loader_reads_a_built_dataset(tmp_path, samples):
    aligned, out = tmp_path / "aligned", tmp_path / "dataset"
    make_aligned(aligned, samples, {"a": "astronaut", "b": "coffee", "c": "rocket"})
    s = cut_patches(aligned, out, PatchOptions(test_photos=1, jobs=1, progress=False), log=lambda *_: None)
    assert s.patches["train"] > 0 and s.patches["test"] > 0
    dped_dir = str(out) + "/"                                    # the original concatenates strings
    test_data, test_answ = original_load_test_data("phone", dped_dir, PATCH_SIZE)
    train_data, train_answ = original_load_batch("phone", dped_dir, -1, PATCH_SIZE)
    assert test_data.shape == test_answ.shape == (s.patches["test"], PATCH_SIZE)
    assert train_data.shape == train_answ.shape == (s.patches["train"], PATCH_SIZE)
    for arr in (test_data, test_answ, train_data, train_answ):
        assert 0 <= arr.min() and arr.max() <= 1 and arr.std() > 0.05     # real pictures, not zeros
    # the same pixels dpedkit's own loader reads, in the same order
    ph, ds = load_split(out / "phone", "phone", "canon", "train", jobs=1)
    ours = ph.permute(0, 2, 3, 1).reshape(len(ph), -1).numpy() / 255
    np.testing.assert_allclose(train_data, ours, atol=1e-3)            # float16 rounding only
    # the real DSLR folder is recorded; train and evaluate find the layout's folders by themselves
    assert Cameras.read(out / "phone") == Cameras("phone", "dslr", "canon")
    assert dataset_cameras(out)[1:] == ("phone", "canon")


def test_a_start_of_the_original_loader_fails_on_a_non_canon_name(tmp_path, samples):
    # the DSLR folder named otherwise (--dped-dslr dslr): the original loader cannot find it
    aligned, out = tmp_path / "aligned", tmp_path / "dataset"
    make_aligned(aligned, samples, {"a": "astronaut", "b": "coffee"})
    cut_patches(aligned, out, PatchOptions(test_photos=1, jobs=1, progress=False, dped_dslr="dslr"),
                log=lambda *_: None)
    assert (out / "phone" / "training_data" / "dslr").is_dir()
    try:
        original_load_test_data("phone", str(out) + "/", PATCH_SIZE)
    except FileNotFoundError as e:
        assert "canon" in str(e)
    else:
        raise AssertionError("the original loader should not find a DSLR folder named dslr")
    assert dataset_cameras(out)[1:] == ("phone", "dslr")              # dpedkit reads what was recorded
