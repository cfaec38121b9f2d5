"""ONNX export: the exported graph in onnxruntime equals the PyTorch generator on real photos."""
import os
from pathlib import Path
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dpedkit.cli import main
from dpedkit.model.inference import generate, prepare, to_tensor
from dpedkit.model.generator import load_generator
from dpedkit.model.networks import Generator

from tests.helpers import OFFICIAL

needs_official = pytest.mark.skipif(not (OFFICIAL / "iphone_orig.index").is_file(),
                                    reason=f"the official DPED checkpoints are not in {OFFICIAL} (set $DPEDKIT_OFFICIAL)")

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
CPU = torch.device("cpu")


def run_onnx(path, x: torch.Tensor) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x.contiguous().numpy()})[0]


@needs_official
def test_official_model_exports_with_dynamic_size_and_matches_pytorch(tmp_path, samples):
    out = tmp_path / "iphone.onnx"
    r = CliRunner().invoke(main, ["export", str(OFFICIAL / "iphone_orig"), str(out)])
    assert r.exit_code == 0, r.output
    graph = onnx.load(str(out)).graph
    assert "InstanceNormalization" in {n.op_type for n in graph.node}     # global statistics over H, W
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, "height", "width"]
    g = prepare(load_generator(OFFICIAL / "iphone_orig")[0], CPU)
    for img in (samples["astronaut"][::2, ::2], samples["coffee"][:77, :101]):     # two sizes, one graph
        x = to_tensor(img, CPU)
        ref = generate(g, x).numpy()
        got = run_onnx(out, x)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-4
        assert np.abs(ref - x.numpy()).max() > 0.05                   # the model does something


def test_our_checkpoint_exports_and_matches(tmp_path, samples):
    torch.manual_seed(3)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"generator": Generator().state_dict(), "iteration": 5}, run / "checkpoints" / "last.pt")
    r = CliRunner().invoke(main, ["export", str(run), str(tmp_path / "m.onnx")])
    assert r.exit_code == 0 and "iteration 5" in r.output, r.output
    g = prepare(load_generator(run)[0], CPU)
    x = to_tensor(samples["chelsea"][:90, :130], CPU)
    assert np.abs(run_onnx(tmp_path / "m.onnx", x) - generate(g, x).numpy()).max() <= 1e-4
    r = CliRunner().invoke(main, ["export", str(tmp_path / "nothing"), str(tmp_path / "n.onnx")])
    assert r.exit_code == 2 and "no checkpoint" in r.output and not (tmp_path / "n.onnx").exists()


def test_the_output_suffix_chooses_the_format_and_an_unknown_one_is_refused(tmp_path):
    for name in ("m.tflite", "m.onx", "model"):
        r = CliRunner().invoke(main, ["export", str(tmp_path / "nothing"), str(tmp_path / name)])
        assert r.exit_code == 2 and "not a format dpedkit exports" in r.output and ".onnx (ONNX)" in r.output, r.output
        assert not (tmp_path / name).exists()
    from dpedkit.export import ExportError, export_model
    with pytest.raises(ExportError, match="'.tflite'"):
        export_model(tmp_path / "nothing", tmp_path / "m.tflite")


def test_the_onnx_file_follows_the_umask_and_leaves_no_temporary(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"generator": Generator().state_dict(), "iteration": 1}, run / "checkpoints" / "last.pt")
    r = CliRunner().invoke(main, ["export", str(run), str(tmp_path / "out" / "m.onnx")])
    assert r.exit_code == 0, r.output
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "out" / "m.onnx").stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["m.onnx"]
