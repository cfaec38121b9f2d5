"""The simulated cameras' image processing (testing only): from the rendered linear-ish
0–255 float image to the 8-bit photo each camera writes. Nothing here moves content except
the phone's lateral chromatic aberration of red and blue (the truth map is green's)."""

from __future__ import annotations

import cv2
import numpy as np


def _grid(w: int, h: int) -> np.ndarray:
    ys, xs = np.mgrid[:h, :w].astype(np.float64)
    return np.stack([xs, ys], -1)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, enc = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1].copy()


def phone_isp(img: np.ndarray, p, rng: np.random.Generator) -> np.ndarray:
    """A phone's rendition of a 0–255 float image: exposure and white balance, (full:
    lateral chromatic aberration, vignetting, local tone mapping), noise, denoising,
    sharpening, JPEG."""
    h, w = img.shape[:2]
    x = img / 255.0
    full = p.isp == "full"
    if full:  # lateral CA: red magnified, blue shrunk about the centre (±0.8 px at the corners per 1000 px radius)
        ca = 0.0008
        c = np.array([(w - 1) / 2, (h - 1) / 2], np.float32)
        g = _grid(w, h).astype(np.float32) - c
        for ch, s in ((0, 1 + ca), (2, 1 - ca)):
            m = g / s + c
            x[..., ch] = cv2.remap(x[..., ch].astype(np.float32), m[..., 0], m[..., 1], cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT_101)
    gains = np.array([1.08, 1.0, 0.9]) * (1.15 if full else 1.05)
    x = x * gains
    if full:
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
        x = x * (1 - 0.25 * r2)[..., None]
        lum = x @ np.array([0.299, 0.587, 0.114])
        base = cv2.GaussianBlur(lum.astype(np.float32), (0, 0), max(w, h) / 40)
        x = x * np.clip(((base + 0.05) / 0.45) ** -0.45, 0.7, 2.2)[..., None]   # lift shadows, hold highlights
    x = np.clip(x, 0, 1) ** 0.85
    noise = 3.0 if full else 2.0
    x = (x * 255 + rng.normal(0, noise, x.shape)).astype(np.float32)
    if full:
        x = cv2.bilateralFilter(np.clip(x, 0, 255), 5, 12, 1.5)
    else:
        x = cv2.GaussianBlur(x, (0, 0), 0.5)
    amount, sigma = (0.9, 1.2) if full else (0.5, 1.0)
    x = x + amount * (x - cv2.GaussianBlur(x, (0, 0), sigma))
    return _jpeg(np.clip(x + 0.5, 0, 255).astype(np.uint8), p.phone_jpeg)


def dslr_isp(img: np.ndarray, p, rng: np.random.Generator) -> np.ndarray:
    x = img + rng.normal(0, 1.0, img.shape).astype(np.float32)
    return _jpeg(np.clip(x + 0.5, 0, 255).astype(np.uint8), p.dslr_jpeg)


