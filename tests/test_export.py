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
    for name in ("m.tfl", "m.onx", "model"):
        r = CliRunner().invoke(main, ["export", str(tmp_path / "nothing"), str(tmp_path / name)])
        assert r.exit_code == 2 and "not a format dpedkit exports" in r.output, r.output
        assert ".onnx (ONNX)" in r.output and ".tflite (TFLite)" in r.output, r.output
        assert not (tmp_path / name).exists()
    from dpedkit.export import ExportError, export_model
    with pytest.raises(ExportError, match="'.tfl'"):
        export_model(tmp_path / "nothing", tmp_path / "m.tfl")


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


# ---------------------------------------------------------------- TFLite (LiteRT)
# Bounds (max abs over the output, RGB in [0, 1]; PSNR with data range 1), against the PyTorch
# fp32 output at the export size: fp32 1e-3 (measured ~3e-7); fp16 weights 2e-2 (measured
# ~5e-3); int8 convolutions: PSNR >= 24 dB for the random-weight test generator (measured
# 28.5 dB: its random channels widen the ranges the image channels share) and >= 40 dB for
# the official iPhone model (measured 47 dB at 100x100).
FP32_TOL, FP16_TOL, INT8_PSNR_FLOOR, INT8_PSNR_FLOOR_OFFICIAL = 1e-3, 2e-2, 24.0, 40.0


@pytest.fixture
def litert():
    pytest.importorskip("litert_torch")
    pytest.importorskip("ai_edge_quantizer")
    return pytest.importorskip("ai_edge_litert.interpreter")


def lively_generator(seed=3) -> Generator:
    """A generator whose output depends on its input through every layer: near the identity,
    with the residual branches switched on (second instance norms' scales 0.5–1)."""
    from dpedkit.model.networks import near_identity
    torch.manual_seed(seed)
    g = near_identity(Generator())
    with torch.no_grad():
        for b in g.blocks:
            b.norm2.weight.uniform_(0.5, 1.0)
    return g.eval()


def psnr(a, b) -> float:
    return float(10 * np.log10(1 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def crop(img, size, top=100, left=150):
    return to_tensor(img[top:top + size[0], left:left + size[1]], CPU).contiguous()


def test_checkpoint_exports_to_tflite_at_the_default_size_and_matches_pytorch(tmp_path, samples, litert):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    g = lively_generator()
    torch.save({"generator": g.state_dict(), "iteration": 7}, run / "checkpoints" / "last.pt")
    r = CliRunner().invoke(main, ["export", str(run), str(tmp_path / "out" / "m.tflite")])
    assert r.exit_code == 0 and "iteration 7" in r.output and "(1, 100, 100, 3) NHWC" in r.output, r.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["m.tflite"]          # no temporary left
    it = litert.Interpreter(model_path=str(tmp_path / "out" / "m.tflite"))
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    assert list(inp["shape"]) == list(out["shape"]) == [1, 100, 100, 3] and inp["dtype"] == out["dtype"] == np.float32
    from dpedkit.export.tflite import run_tflite
    x = crop(samples["astronaut"], (100, 100))
    with torch.no_grad():
        ref = g(x).numpy()
    got = run_tflite(tmp_path / "out" / "m.tflite", x)
    assert got.shape == ref.shape == (1, 3, 100, 100)
    assert np.abs(got - ref).max() <= FP32_TOL
    assert np.abs(ref - x.numpy()).max() > 0.05                  # the model does something


def test_fp16_and_int8_stay_close_to_the_float_model(tmp_path, samples, litert):
    from dpedkit.export import ExportOptions, export_model
    from dpedkit.export.tflite import export_tflite, run_tflite
    from dpedkit.imageio import write_image
    g = lively_generator(5)
    x = crop(samples["astronaut"], (64, 64))
    with torch.no_grad():
        ref = g(x).numpy()
    f32_bytes = 4 * sum(p.numel() for p in g.parameters())         # what the float32 file holds, at least
    f16 = export_tflite(g, tmp_path / "f16.tflite", (1, 3, 64, 64), "fp16")
    assert f16.stat().st_size < 0.55 * f32_bytes
    assert np.abs(run_tflite(f16, x) - ref).max() <= FP16_TOL
    cal = tmp_path / "cal"                                       # the other photos, not the one scored
    for name, img in samples.items():
        if name != "astronaut":
            write_image(cal / f"{name}.png", img)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"generator": g.state_dict(), "iteration": 1}, run / "checkpoints" / "last.pt")
    i8 = export_model(run, tmp_path / "i8.tflite", ExportOptions(input_size=(64, 64), quantize="int8", calibration=cal),
                      log=lambda s: None)
    assert i8.stat().st_size < 0.35 * f32_bytes
    it = litert.Interpreter(model_path=str(i8))
    assert it.get_input_details()[0]["dtype"] == it.get_output_details()[0]["dtype"] == np.float32
    assert sum(t["dtype"] == np.int8 for t in it.get_tensor_details()) > 20      # int8 inside
    got = run_tflite(i8, x)
    assert psnr(got, ref) >= INT8_PSNR_FLOOR
    assert psnr(got, ref) > psnr(x.numpy(), ref) + 10            # far better than the input itself


def test_a_raw_network_exports_through_the_same_function(tmp_path, samples, litert):
    """MicroISP: packed Bayer (1, 4, h, w) in, RGB (1, 3, 2h, 2w) out, grouped convolutions,
    PReLU, channel attention, depth-to-space."""
    from dpedkit.export.tflite import export_tflite, run_tflite
    from dpedkit.model.microisp import MicroISP
    from dpedkit.train.raw_data import pack_bayer
    torch.manual_seed(0)
    m = MicroISP(init_std=0.3).eval()
    rgb = samples["astronaut"][100:260, 150:310].astype(np.float32) * 4     # an RGGB mosaic, 0…1020
    mosaic = np.empty(rgb.shape[:2], np.float32)
    mosaic[0::2, 0::2], mosaic[0::2, 1::2] = rgb[0::2, 0::2, 0], rgb[0::2, 1::2, 1]
    mosaic[1::2, 0::2], mosaic[1::2, 1::2] = rgb[1::2, 0::2, 1], rgb[1::2, 1::2, 2]
    x = torch.from_numpy(pack_bayer(mosaic))[None]
    with torch.no_grad():
        ref = m(x).numpy()
    path = export_tflite(m, tmp_path / "microisp.tflite", (1, 4, 80, 80))
    got = run_tflite(path, x)
    assert got.shape == ref.shape == (1, 3, 160, 160)
    assert np.abs(got - ref).max() <= FP32_TOL and ref.std() > 0.01


def test_tflite_options_are_checked_before_any_work(tmp_path):
    run = tmp_path / "nothing"          # no model there: a refusal must come first
    cases = [(["m.onnx", "--quantize", "fp16"], "TFLite only"),
             (["m.onnx", "--input-size", "64x64"], "TFLite only"),
             (["m.tflite", "--quantize", "int8"], "needs --calibration"),
             (["m.tflite", "--calibration", str(tmp_path)], "int8 only"),
             (["m.tflite", "--input-size", "0x64"], "positive"),
             (["m.tflite", "--input-size", "64"], "not a size HxW")]
    for (name, *opts), message in cases:
        r = CliRunner().invoke(main, ["export", str(run), str(tmp_path / name), *opts])
        assert r.exit_code == 2 and message in r.output, (opts, r.output)
        assert not (tmp_path / name).exists()


def test_without_litert_tflite_names_the_extra(tmp_path, monkeypatch):
    import dpedkit.export.tflite as tfl
    from dpedkit.export import ExportError, ExportOptions, check_options
    monkeypatch.setattr(tfl, "REQUIRES", ("litert_torch", "no_such_module_for_dpedkit"))
    with pytest.raises(ExportError, match=r"pip install 'dpedkit\[tflite\]'"):
        check_options(tmp_path / "m.tflite", ExportOptions())
    with pytest.raises(ExportError, match=r"pip install 'dpedkit\[tflite\]'"):
        tfl.export_tflite(Generator(), tmp_path / "m.tflite", (1, 3, 64, 64))
    r = CliRunner().invoke(main, ["export", str(tmp_path / "nothing"), str(tmp_path / "m.tflite")])
    assert r.exit_code == 2 and "dpedkit[tflite]" in r.output and not (tmp_path / "m.tflite").exists()


@needs_official
def test_official_model_exports_to_tflite_and_matches_pytorch(tmp_path, samples, litert):
    from dpedkit.export.tflite import run_tflite
    from dpedkit.imageio import write_image
    for name, img in samples.items():
        if name != "chelsea":
            write_image(tmp_path / "cal" / f"{name}.png", img)
    out, out8 = tmp_path / "iphone.tflite", tmp_path / "iphone_int8.tflite"
    for path, opts in ((out, []), (out8, ["--quantize", "int8", "--calibration", str(tmp_path / "cal")])):
        r = CliRunner().invoke(main, ["export", str(OFFICIAL / "iphone_orig"), str(path), "--input-size", "96x128", *opts])
        assert r.exit_code == 0, r.output
    g = load_generator(OFFICIAL / "iphone_orig")[0]
    x = crop(samples["chelsea"], (96, 128), 50, 100)
    with torch.no_grad():
        ref = g(x).numpy()
    assert np.abs(run_tflite(out, x) - ref).max() <= FP32_TOL
    assert np.abs(ref - x.numpy()).max() > 0.05
    assert psnr(run_tflite(out8, x), ref) >= INT8_PSNR_FLOOR_OFFICIAL
