"""ONNX export: the exported graph in onnxruntime equals the PyTorch generator on real photos."""
import os
from pathlib import Path
from types import SimpleNamespace
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
    r = CliRunner().invoke(main, ["export", str(run), str(tmp_path / "out" / "m.onnx")])
    assert r.exit_code == 0 and "iteration 5" in r.output, r.output
    mask = os.umask(0)                                          # the file follows the umask, no temporary left
    os.umask(mask)
    assert (tmp_path / "out" / "m.onnx").stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["m.onnx"]
    g = prepare(load_generator(run)[0], CPU)
    x = to_tensor(samples["chelsea"][:90, :130], CPU)
    assert np.abs(run_onnx(tmp_path / "out" / "m.onnx", x) - generate(g, x).numpy()).max() <= 1e-4
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


# ---------------------------------------------------------------- TFLite (LiteRT)
# Each litert-torch conversion costs ~3–5 s on 2 cores whatever the input size (torch.export
# and the lowering scale with the graph, not the tensors), so the tests convert as few graphs
# as they can: one CLI export (int8, whose float32 flatbuffer is kept on the way), one small
# fp16 generator, one small MicroISP (int8 too, its float32 flatbuffer kept the same way).
# Bounds (max abs over the output, RGB in [0, 1]; PSNR with data range 1), against the PyTorch
# fp32 output at the export size (measured with litert-torch 0.10 on 2 cores): fp32 1e-3
# (measured 4e-7 for the official iPhone model, 2e-5 for the lively checkpoint at 100x100,
# MicroISP ~3e-7); fp16 weights 2e-2 (measured 7e-4, one-block generator at 64x64); int8
# convolutions: PSNR >= 24 dB for the random-weight lively generator (measured 25.8 dB at
# 100x100: its random channels widen the ranges the image channels share) and >= 40 dB for
# the official iPhone model (measured 46.6 dB at 100x100 on a chelsea crop); >= 30 dB for a
# random-weight MicroISP (3 blocks, sigma 0.3) on a simulated RAW test patch (measured 32.8 dB
# at 80x80 packed).
FP32_TOL, FP16_TOL, INT8_PSNR_FLOOR, INT8_PSNR_FLOOR_OFFICIAL = 1e-3, 2e-2, 24.0, 40.0
INT8_PSNR_FLOOR_ISP = 30.0


@pytest.fixture(scope="module")
def litert():
    pytest.importorskip("litert_torch")
    pytest.importorskip("ai_edge_quantizer")
    return pytest.importorskip("ai_edge_litert.interpreter")


def lively_generator(seed=3, ch=64, blocks=4) -> Generator:
    """A generator whose output depends on its input through every layer: near the identity,
    with the residual branches switched on (second instance norms' scales 0.5–1)."""
    from dpedkit.model.networks import near_identity
    torch.manual_seed(seed)
    g = near_identity(Generator(ch, blocks))
    with torch.no_grad():
        for b in g.blocks:
            b.norm2.weight.uniform_(0.5, 1.0)
    return g.eval()


def psnr(a, b) -> float:
    return float(10 * np.log10(1 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def crop(img, size, top=100, left=150):
    return to_tensor(img[top:top + size[0], left:left + size[1]], CPU).contiguous()


@pytest.fixture(scope="module")
def cli_int8(tmp_path_factory, samples, litert):
    """One ``dpedkit export MODEL out/m.tflite --quantize int8 --calibration DIR`` at the default
    size: of the official iPhone model when its checkpoint is there, else of a lively dpedkit
    checkpoint. The float32 flatbuffer that :func:`convert` made before quantising it is kept
    (a spy around ``quantize_int8``), so one conversion checks the CLI, fp32 and int8."""
    import dpedkit.export.tflite as tfl
    from dpedkit.imageio import write_image
    tmp = tmp_path_factory.mktemp("tflite")
    official = (OFFICIAL / "iphone_orig.index").is_file()
    if official:
        model, scored, what, floor = OFFICIAL / "iphone_orig", "chelsea", "official DPED TensorFlow checkpoint", \
            INT8_PSNR_FLOOR_OFFICIAL
        g, x = load_generator(model)[0], crop(samples["chelsea"], (100, 100), 50, 100)
    else:
        model, scored, what, floor = tmp / "run", "astronaut", "iteration 7", INT8_PSNR_FLOOR
        g, x = lively_generator(), crop(samples["astronaut"], (100, 100))
        (model / "checkpoints").mkdir(parents=True)
        torch.save({"generator": g.state_dict(), "iteration": 7}, model / "checkpoints" / "last.pt")
    for name, img in samples.items():           # the other photos, not the one scored
        if name != scored:
            write_image(tmp / "cal" / f"{name}.png", img)
    seen = {}

    def spy(float_model, cal, shape):
        seen.update(float_model=float_model, samples=len(cal), shape=shape)
        return quantize(float_model, cal, shape)
    quantize = tfl.quantize_int8
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tfl, "quantize_int8", spy)
        r = CliRunner().invoke(main, ["export", str(model), str(tmp / "out" / "m.tflite"),
                                      "--quantize", "int8", "--calibration", str(tmp / "cal")])
    with torch.no_grad():
        ref = g(x).numpy()
    return SimpleNamespace(result=r, out=tmp / "out" / "m.tflite", what=what, floor=floor, g=g, x=x, ref=ref, **seen)


def test_the_cli_exports_tflite_at_the_default_size_and_its_float_graph_matches_pytorch(cli_int8, litert):
    from dpedkit.export.tflite import run_tflite
    c, r = cli_int8, cli_int8.result
    assert r.exit_code == 0 and c.what in r.output and "(1, 100, 100, 3) NHWC" in r.output, r.output
    assert "int8, calibrated on 5 images" in r.output and c.samples == 5 and c.shape == (1, 3, 100, 100), r.output
    assert [p.name for p in c.out.parent.iterdir()] == ["m.tflite"]          # no temporary left
    it = litert.Interpreter(model_path=str(c.out))
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    assert list(inp["shape"]) == list(out["shape"]) == [1, 100, 100, 3] and inp["dtype"] == out["dtype"] == np.float32
    got = run_tflite(c.float_model, c.x)                # the float32 graph the int8 file was made from
    assert got.shape == c.ref.shape == (1, 3, 100, 100)
    assert np.abs(got - c.ref).max() <= FP32_TOL
    assert np.abs(c.ref - c.x.numpy()).max() > 0.05     # the model does something


def test_int8_stays_close_to_the_float_model(cli_int8, litert):
    from dpedkit.export.tflite import run_tflite
    c = cli_int8
    f32_bytes = 4 * sum(p.numel() for p in c.g.parameters())       # what the float32 file holds, at least
    assert len(c.float_model) >= f32_bytes and c.out.stat().st_size < 0.35 * f32_bytes
    it = litert.Interpreter(model_path=str(c.out))
    assert it.get_input_details()[0]["dtype"] == it.get_output_details()[0]["dtype"] == np.float32
    assert sum(t["dtype"] == np.int8 for t in it.get_tensor_details()) > 20      # int8 inside
    got = run_tflite(c.out, c.x)
    assert psnr(got, c.ref) >= c.floor
    assert psnr(got, c.ref) > psnr(c.x.numpy(), c.ref) + 10      # far better than the input itself


def test_fp16_stays_close_to_the_float_model(tmp_path, samples, litert):
    from dpedkit.export.tflite import export_tflite, run_tflite
    g = lively_generator(5, blocks=1)          # the generator's layers, one residual block: a smaller graph
    x = crop(samples["astronaut"], (64, 64))
    with torch.no_grad():
        ref = g(x).numpy()
    f32_bytes = 4 * sum(p.numel() for p in g.parameters())
    f16 = export_tflite(g, tmp_path / "f16.tflite", (1, 3, 64, 64), "fp16")
    assert f16.stat().st_size < 0.55 * f32_bytes        # measured 0.52
    assert np.abs(run_tflite(f16, x) - ref).max() <= FP16_TOL
    assert np.abs(ref - x.numpy()).max() > 0.05


def test_a_raw_network_exports_to_int8_calibrated_on_its_raw_dataset(tmp_path, litert):
    """``dpedkit export RUN m.tflite --quantize int8 --calibration DATA`` of a MicroISP run:
    packed Bayer (1, 4, h, w) in, RGB (1, 3, 2h, 2w) out, grouped convolutions, PReLU,
    channel attention, depth-to-space (3 blocks a stage: one residual group with its
    attention, the smallest graph that has every layer; 7 convert in ~10 s, 3 in ~6 s).
    Calibrated on the training mosaics of its RAW-to-RGB dataset (simulated from real
    photos, tests/train/zrr_sim.py), packed as training packs them and centre-cropped to the
    input size. On a test mosaic the calibration never saw, the float32 graph the int8 file
    was made from (kept by a spy: one conversion) matches PyTorch within FP32_TOL and the
    int8 file is within INT8_PSNR_FLOOR_ISP of it (measured 32.8 dB). An input larger than
    the patches, or a folder that is no RAW-to-RGB dataset, is refused before converting."""
    import dpedkit.export.tflite as tfl
    from dpedkit.export.tflite import run_tflite
    from dpedkit.model.generator import load_model
    from dpedkit.train.raw_data import ZrrPatches
    from tests.train.zrr_sim import write_zrr
    write_zrr(tmp_path / "data", size=176, n_train=4, n_test=1)
    torch.manual_seed(0)
    from dpedkit.model.microisp import MicroISP
    m = MicroISP(blocks=3, init_std=0.3)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    torch.save({"network": {"name": "microisp", "kwargs": {"blocks": 3}, "level": 0}, "generator": m.state_dict(),
                "iteration": 3}, tmp_path / "run" / "checkpoints" / "last.pt")
    args = ["export", str(tmp_path / "run"), str(tmp_path / "m.tflite"), "--quantize", "int8", "--calibration"]
    r = CliRunner().invoke(main, args + [str(tmp_path / "data"), "--input-size", "90x90"])
    assert r.exit_code == 2 and "smaller than the input size 90x90" in r.output, r.output
    r = CliRunner().invoke(main, args + [str(tmp_path / "run"), "--input-size", "80x80"])
    assert r.exit_code == 2 and "RAW-to-RGB dataset (--layout zrr)" in r.output, r.output
    seen = {}
    quantize = tfl.quantize_int8
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tfl, "quantize_int8", lambda f, cal, shape: quantize(seen.setdefault("float", f), cal, shape))
        r = CliRunner().invoke(main, args + [str(tmp_path / "data"), "--input-size", "80x80"])
    assert r.exit_code == 0 and "int8, calibrated on 4 packed mosaics, input (1, 80, 80, 4)" in r.output, r.output
    it = litert.Interpreter(model_path=str(tmp_path / "m.tflite"))
    assert sum(t["dtype"] == np.int8 for t in it.get_tensor_details()) > 10      # int8 inside
    x = ZrrPatches(tmp_path / "data", "test")[0][0][None, :, 4:84, 4:84]
    net = load_model(tmp_path / "run")[0]
    with torch.no_grad():
        ref = net(x).numpy()
    assert np.abs(run_tflite(seen["float"], x) - ref).max() <= FP32_TOL
    got = run_tflite(tmp_path / "m.tflite", x)
    print(f"MicroISP int8 TFLite against PyTorch fp32: {psnr(got, ref):.1f} dB, output std {ref.std():.3f}")
    assert got.shape == ref.shape == (1, 3, 160, 160) and ref.std() > 0.02
    assert psnr(got, ref) >= INT8_PSNR_FLOOR_ISP


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
