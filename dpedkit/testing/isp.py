"""The simulated cameras' image processing (testing only): from the rendered 0–255 float
image to the 8-bit photo each camera writes.

Nothing here moves content except the phone's lateral chromatic aberration of red and blue
(the truth map is green's, which dominates luminance). ``p`` is a
:class:`dpedkit.testing.shoots.CaseParams`: ``isp`` ``mild`` (exposure, white balance,
noise, a light denoise and sharpening, JPEG) or ``full`` — a strong phone ISP: lateral
chromatic aberration, corner softness, vignetting, exposure and white balance, local tone
mapping, saturation, signal-dependent noise then edge-preserving denoising, sharpening with
halos, JPEG (``phone_jpeg``). The DSLR adds light noise, its depth-of-field falloff
(``dslr_focus_falloff``) and JPEG (``dslr_jpeg``).
"""

from __future__ import annotations

import cv2
import numpy as np


def _grid(w: int, h: int) -> np.ndarray:
    ys, xs = np.mgrid[:h, :w].astype(np.float64)
    return np.stack([xs, ys], -1)


def _radius2(w: int, h: int) -> np.ndarray:
    """Squared distance from the frame's centre over the squared half-diagonal (0 … 1)."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    return ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, enc = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1].copy()


def _lateral_ca(x: np.ndarray, ca: float = 0.0008) -> np.ndarray:
    """Red magnified, blue shrunk about the centre (±0.8 px at the corners per 1000 px radius)."""
    h, w = x.shape[:2]
    c = np.array([(w - 1) / 2, (h - 1) / 2], np.float32)
    g = _grid(w, h).astype(np.float32) - c
    for ch, s in ((0, 1 + ca), (2, 1 - ca)):
        m = g / s + c
        x[..., ch] = cv2.remap(x[..., ch].astype(np.float32), m[..., 0], m[..., 1], cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)
    return x


def _corner_softness(x: np.ndarray, sigma: float = 1.1) -> np.ndarray:
    """A lens that is softer towards the corners: blend towards a blurred copy with r⁴."""
    h, w = x.shape[:2]
    wt = np.clip(_radius2(w, h), 0, 1) ** 2
    return x + (cv2.GaussianBlur(x.astype(np.float32), (0, 0), sigma) - x) * wt[..., None]


def _tone(x: np.ndarray) -> np.ndarray:
    """Vignetting, then local tone mapping (lift shadows, hold highlights) and saturation."""
    h, w = x.shape[:2]
    x = x * (1 - 0.25 * _radius2(w, h))[..., None]
    lum = x @ np.array([0.299, 0.587, 0.114])
    base = cv2.GaussianBlur(lum.astype(np.float32), (0, 0), max(w, h) / 40)
    x = x * np.clip(((base + 0.05) / 0.45) ** -0.45, 0.7, 2.2)[..., None]
    lum = (x @ np.array([0.299, 0.587, 0.114]))[..., None]
    return lum + 1.3 * (x - lum)


def phone_isp(img: np.ndarray, p, rng: np.random.Generator) -> np.ndarray:
    """A phone's rendition of a 0–255 float image (see the module docstring)."""
    x = img / 255.0
    full = p.isp == "full"
    if full:
        x = _corner_softness(_lateral_ca(x))
    x = x * (np.array([1.08, 1.0, 0.9]) * (1.15 if full else 1.05))
    if full:
        x = _tone(x)
    x = np.clip(x, 0, 1) ** 0.85
    if full:  # shot noise grows with the signal, read noise does not (σ 2.2 … 4.5 grey levels)
        sigma = np.sqrt(5.0 + 0.06 * x * 255)
        x = (x * 255 + rng.normal(0, 1, x.shape) * sigma).astype(np.float32)
        x = cv2.bilateralFilter(np.clip(x, 0, 255), 5, 14, 1.5)
        amount, radius = 1.1, 1.4                  # strong unsharp mask: visible halos
    else:
        x = (x * 255 + rng.normal(0, 2.0, x.shape)).astype(np.float32)
        x = cv2.GaussianBlur(x, (0, 0), 0.5)
        amount, radius = 0.5, 1.0
    x = x + amount * (x - cv2.GaussianBlur(x, (0, 0), radius))
    return jpeg(np.clip(x + 0.5, 0, 255).astype(np.uint8), p.phone_jpeg)


def dslr_isp(img: np.ndarray, p, rng: np.random.Generator) -> np.ndarray:
    """Light noise; the DSLR's shallow depth of field as a blur that grows over the bottom
    ``dslr_focus_falloff[1]`` of the frame up to σ ``dslr_focus_falloff[0]`` DSLR px (the
    ground nearer than the focus plane); JPEG."""
    x = img + rng.normal(0, 1.0, img.shape).astype(np.float32)
    sigma, share = getattr(p, "dslr_focus_falloff", (0.0, 0.0))
    if sigma > 0 and share > 0:
        h = x.shape[0]
        wt = np.clip((np.arange(h, dtype=np.float32) / (h - 1) - (1 - share)) / share, 0, 1)
        x = x + (cv2.GaussianBlur(x, (0, 0), sigma) - x) * wt[:, None, None]
    return jpeg(np.clip(x + 0.5, 0, 255).astype(np.uint8), p.dslr_jpeg)
