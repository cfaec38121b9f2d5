"""Synthetic phone/DSLR pairs with a known homography, for tests, benchmarks and the demo.

A "DSLR" photo (any RGB image) is re-imaged by a simulated phone: another field of view and
resolution (a known homography ``H``, DSLR px → phone px), colour and tone rendition,
vignetting, sensor noise and JPEG compression.
"""

from __future__ import annotations

import cv2
import numpy as np

from dpedkit.align.geometry import apply_h


def random_homography(dslr_size: tuple[int, int], phone_size: tuple[int, int], rng: np.random.Generator,
                      coverage: float = 0.85, max_rot_deg: float = 2.0, max_persp: float = 0.02,
                      max_offset: float = 0.04) -> np.ndarray:
    """A plausible tripod-pair homography: the phone frame sees the central ``coverage``
    of the DSLR frame (by width), slightly rotated, shifted and in perspective."""
    dw, dh = dslr_size
    pw, ph = phone_size
    s = pw / (coverage * dw)
    a = np.deg2rad(rng.uniform(-max_rot_deg, max_rot_deg))
    A = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) * [[s], [s], [1]]
    c_d = np.array([(dw - 1) / 2, (dh - 1) / 2])
    c_p = np.array([(pw - 1) / 2, (ph - 1) / 2]) + rng.uniform(-max_offset, max_offset, 2) * [pw, ph]
    P = np.eye(3)
    P[2, :2] = rng.uniform(-max_persp, max_persp, 2) / max(dw, dh)
    T1 = np.array([[1, 0, -c_d[0]], [0, 1, -c_d[1]], [0, 0, 1.0]])
    H = A @ P @ T1
    # keep the DSLR centre on c_p after the perspective term
    q = apply_h(H, [c_d])[0]
    H = np.array([[1, 0, c_p[0] - q[0]], [0, 1, c_p[1] - q[1]], [0, 0, 1.0]]) @ H
    return H / H[2, 2]


def render_phone(dslr: np.ndarray, H: np.ndarray, phone_size: tuple[int, int], rng: np.random.Generator,
                 noise: float = 2.0, jpeg_quality: int | None = 90, gains=(1.08, 1.0, 0.9),
                 gamma: float = 0.85, vignette: float = 0.3, border_fill: bool = True) -> np.ndarray:
    """Re-image ``dslr`` (RGB uint8) through ``H`` into a phone frame of ``phone_size``
    ``(w, h)``: anti-aliased warp, colour gains, a tone curve, vignetting, noise, JPEG."""
    pw, ph = phone_size
    scale = np.sqrt(abs(np.linalg.det(H[:2, :2])))
    img = dslr
    if scale < 1:  # band-limit before sampling, as an optical low-pass and the sensor would
        sigma = 0.5 * np.sqrt(1 / scale ** 2 - 1)
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    border = cv2.BORDER_REFLECT if border_fill else cv2.BORDER_CONSTANT
    out = cv2.warpPerspective(img, H, (pw, ph), flags=cv2.INTER_CUBIC, borderMode=border).astype(np.float32) / 255
    out = np.clip(out * np.asarray(gains, np.float32), 0, 1) ** gamma
    yy, xx = np.mgrid[:ph, :pw].astype(np.float32)
    r2 = ((xx - pw / 2) ** 2 + (yy - ph / 2) ** 2) / ((pw / 2) ** 2 + (ph / 2) ** 2)
    out *= (1 - vignette * r2)[..., None]
    out = out * 255 + rng.normal(0, noise, out.shape).astype(np.float32)
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if jpeg_quality:
        ok, enc = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        out = cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1].copy()
    return out


def sample_images() -> dict[str, np.ndarray]:
    """Real colour photos that ship with scikit-image (no download), by name."""
    from skimage import data
    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "rocket": data.rocket(),
            "chelsea": data.chelsea(), "motorcycle": data.stereo_motorcycle()[0],
            "immunohistochemistry": data.immunohistochemistry()}


def collage(size: tuple[int, int], rng: np.random.Generator, offset: int = 0, grain: float = 12.0) -> np.ndarray:
    """A ``size`` ``(w, h)`` RGB image tiled from the sample photos (3×2), enlarged, with fine
    grain so that full resolution has detail: a stand-in for a DSLR-size photo."""
    imgs = list(sample_images().values())
    w, h = size
    tiles = [cv2.resize(imgs[(offset + k) % len(imgs)], (w // 3, h // 2), interpolation=cv2.INTER_CUBIC)
             for k in range(6)]
    img = cv2.resize(np.vstack([np.hstack(tiles[:3]), np.hstack(tiles[3:])]), size, interpolation=cv2.INTER_CUBIC)
    noise = cv2.GaussianBlur(rng.normal(0, grain, (h, w)).astype(np.float32), (0, 0), 1.2)
    return np.clip(img + noise[..., None], 0, 255).astype(np.uint8)


def synthetic_pair(dslr: np.ndarray, phone_scale: float, rng: np.random.Generator, **kw) -> tuple[np.ndarray, np.ndarray]:
    """A simulated phone photo of ``dslr`` with ``phone_scale`` of its width in pixels and
    the same aspect ratio; returns ``(phone, H)`` with ``H`` DSLR px → phone px."""
    dh, dw = dslr.shape[:2]
    phone_size = (round(dw * phone_scale), round(dh * phone_scale))
    H = random_homography((dw, dh), phone_size, rng)
    return render_phone(dslr, H, phone_size, rng, **kw), H

