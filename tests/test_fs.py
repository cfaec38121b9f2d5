"""Durable writes: every output is fsynced before its rename, and folders are fsynced once per
batch, before the journal records the item that wrote into them."""
import os
import stat

import pytest

from dpedkit import fs
from dpedkit.layout import Journal


@pytest.fixture
def fsyncs(monkeypatch):
    calls = []
    real = os.fsync

    def spy(fd):
        calls.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)
    monkeypatch.setattr(os, "fsync", spy)
    monkeypatch.setattr(fs, "DURABLE", True)
    fs._renamed_into.clear()
    return calls


def test_files_are_fsynced_and_their_folder_once_per_batch(tmp_path, fsyncs):
    for i in range(10):
        fs.write_bytes_atomic(tmp_path / "a" / f"{i}.bin", b"x" * i)
    fs.write_bytes_atomic(tmp_path / "b" / "0.bin", b"y")
    assert fsyncs == ["file"] * 11                      # the folders wait for the batch
    assert fs.sync_folders() == 2 and fsyncs[11:] == ["folder", "folder"]
    assert fs.sync_folders() == 0                       # nothing renamed since
    assert (tmp_path / "a" / "9.bin").read_bytes() == b"x" * 9


def test_the_journal_records_an_item_only_after_its_outputs_folders_are_durable(tmp_path, fsyncs):
    j = Journal(tmp_path / "manifest.jsonl")
    fs.write_bytes_atomic(tmp_path / "out" / "p.png", b"png")
    del fsyncs[:]
    j.append({"name": "p", "status": "ok"})
    assert fsyncs == ["folder", "file"]                 # out/ first, then the manifest's line
    j.close()


def test_a_temporary_for_a_named_writer_is_committed_durably_and_follows_the_umask(tmp_path, fsyncs):
    tmp = fs.temp_path(tmp_path / "m.onnx")
    assert tmp.name.startswith(fs.TMP_PREFIX) and tmp.parent == tmp_path
    tmp.write_bytes(b"model")
    fs.commit(tmp, tmp_path / "m.onnx")
    assert fsyncs == ["file"] and fs.sync_folders() == 1
    assert (tmp_path / "m.onnx").stat().st_mode & 0o777 == fs.FILE_MODE and not tmp.exists()


def test_without_durability_nothing_is_fsynced(tmp_path, fsyncs, monkeypatch):
    monkeypatch.setattr(fs, "DURABLE", False)
    fs.write_bytes_atomic(tmp_path / "a.bin", b"a")
    assert fs.sync_folders() == 0 and fsyncs == []
