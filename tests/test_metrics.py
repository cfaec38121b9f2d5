import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from dpedkit.metrics import ms_ssim, psnr, ssim


@pytest.mark.parametrize("noise", [0.02, 0.1])
def test_metrics_agree_with_scikit_image(samples, noise):
    a = samples["astronaut"][:120, :150].astype(np.float64) / 255
    b = np.clip(a + np.random.default_rng(0).normal(0, noise, a.shape), 0, 1)
    ta, tb = (torch.tensor(x).permute(2, 0, 1)[None].float() for x in (a, b))
    assert float(psnr(ta, tb)) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1), abs=1e-3)
    ref = structural_similarity(a, b, data_range=1, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert float(ssim(ta, tb)) == pytest.approx(ref, abs=1e-4)


def reference_ms_ssim(img1, img2, max_val=255.0, weights=(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)):
    """MS-SSIM with the operations the DPED code uses (NHWC, 0–255, SciPy), written independently."""
    from scipy import ndimage, signal

    def gauss(size, sigma):
        r = np.arange(size) - (size - 1) / 2
        g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma ** 2))
        return g / g.sum()

    def ssim_cs(x, y):
        size = min(11, x.shape[1], x.shape[2])
        win = gauss(size, size * 1.5 / 11)[None, :, :, None]
        f = lambda z: signal.fftconvolve(z, win, mode="valid")  # noqa: E731
        mx, my = f(x), f(y)
        sxx, syy, sxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
        c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
        cs = (2 * sxy + c2) / (sxx + syy + c2)
        return np.mean((2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1) * cs), np.mean(cs)

    box = np.ones((1, 2, 2, 1)) / 4
    terms = []
    for i in range(len(weights)):
        s, cs = ssim_cs(img1, img2)
        terms.append(cs if i < len(weights) - 1 else s)
        img1, img2 = (ndimage.convolve(z, box, mode="reflect")[:, ::2, ::2] for z in (img1, img2))
    return np.prod(np.array(terms) ** np.array(weights))


@pytest.mark.parametrize("shape", [(100, 100), (75, 61)])
def test_ms_ssim_matches_the_original_conventions(samples, shape):
    rng = np.random.default_rng(1)
    h, w = shape
    a = np.stack([samples[k][:h, :w] for k in ("astronaut", "coffee")]).astype(np.float64)
    b = np.clip(a * 0.9 + 12 + rng.normal(0, 8, a.shape), 0, 255)
    ta, tb = (torch.tensor(x / 255).permute(0, 3, 1, 2) for x in (a, b))
    ref = reference_ms_ssim(a, b)
    assert 0.5 < ref < 0.99
    assert float(ms_ssim(ta, tb)) == pytest.approx(ref, abs=1e-5)
    assert float(ms_ssim(ta, ta)) == pytest.approx(1.0, abs=1e-6)
    # one scale with weight 1 is plain SSIM (scikit-image's Gaussian convention)
    assert float(ms_ssim(ta, tb, weights=(1.0,))) == pytest.approx(float(ssim(ta, tb)), abs=1e-5)
