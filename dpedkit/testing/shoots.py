"""Realistic simulated phone/DSLR shoots with a dense ground truth (testing only).

:func:`simulate` renders one shoot of a layered scene built from real photos
(``skimage.data``): a DSLR photo and a phone photo of the same scene, and for **every phone
pixel** the DSLR source position showing the same scene point (``Truth.dslr_xy``).

Coordinates everywhere: pixels, ``x`` right, ``y`` down, pixel centres at integers (OpenCV's
convention). *Scene coordinates* are the DSLR's ideal (undistorted) image coordinates.

The geometry is a set of fronto-parallel planes ("layers": background, middle, foreground,
a moving object), each a textured image with an alpha mask placed in scene coordinates.
Two lenses a few cm apart see a plane at depth ``Z`` displaced by ``f·b/Z`` in the image,
uniformly over the plane: the phone sees layer ``k`` through ``T(d_k)·G`` (``G`` the
homography scene → phone ideal coords, ``d_k`` the layer's disparity in phone px; the
background's disparity is absorbed into ``G``). Each camera then applies its own radial
distortion ``x_d = c + (x_u − c)·(1 + k1·r² + k2·r⁴)`` with ``r`` the radius over the
half-diagonal. The moving object sits at another place in the DSLR exposure. Both
photos are rendered by inverse mapping (``cv2.remap``) from the layer textures, so the
map is exact; the photometric differences (ISP, depth of field, JPEG) do not move
anything except the lateral chromatic aberration of the red and blue channels (the map
is the green channel's, which dominates luminance).

Cases (:data:`CASES`, :func:`case_params`; every case has a phone/DSLR roll of up to 1.5°,
slight perspective, a DSLR 1.35–1.55× the phone's width seeing ~1/0.88 of its field, noise,
denoising + sharpening and JPEG on the phone):
``homography`` the control, one plane, no distortion: the truth is exactly a homography;
``distortion`` phone k1 ≈ −2.2 %, DSLR k1 ≈ +1.5 % (one homography leaves ~15–30 px at the
corners of a 1600×1200 phone frame); ``parallax`` two objects in front of the background,
2.5 and 5 phone px of disparity; ``moving`` an object displaced by ~6 phone px and swayed
~1.5° between the exposures; ``processing`` the control's single plane seen through a strong
phone ISP (exposure, white balance, vignetting, local tone mapping, saturation,
signal-dependent noise then bilateral denoising, sharpening with halos, lateral chromatic
aberration, corner softness, JPEG 78 against the DSLR's 92) and the DSLR's shallower depth
of field (slightly soft everywhere, out of focus towards the bottom of the frame);
``combined`` distortion, parallax and motion with that processing (the DSLR focuses on the
middle layer: the foreground is out of focus). Parameters get a
seeded ±20 % jitter. Distortion is relative to the frame; disparities and motion are in
phone px at any size.

The ISP of each camera is in :mod:`dpedkit.testing.isp`; the scorer that measures accepted
patches against the truth in :mod:`dpedkit.testing.scoring`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dpedkit.align.geometry import translation
from dpedkit.testing.isp import dslr_isp, phone_isp

CASES = ("homography", "distortion", "parallax", "moving", "processing", "combined")
# each case's seed stream (fixed: a case added later changes no existing one's jitter)
_CASE_STREAM = {"homography": 0, "distortion": 1, "parallax": 2, "moving": 3, "combined": 4, "processing": 5}
# Bump when a change of the simulator changes its images or truth for the same parameters
# (cached shoots, e.g. the benchmark's, are then rendered again).
SIMULATOR_VERSION = 3


# ----------------------------------------------------------------------------- geometry

def _radial(points: np.ndarray, size: tuple[int, int], k: tuple[float, float], inverse: bool = False) -> np.ndarray:
    """Radial distortion of ``(..., 2)`` points of a ``size`` ``(w, h)`` frame: ideal →
    distorted, or distorted → ideal with ``inverse``.

    The inverse is a function of the radius only: solved by fixed-point iteration on a fine
    table of radii and interpolated (error < 1e-6 px for the few-percent coefficients here).
    """
    k1, k2 = k
    if k1 == 0 and k2 == 0:
        return points
    w, h = size
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    R = np.hypot(w, h) / 2
    n = (points - c) / R
    r2 = (n * n).sum(-1)
    if not inverse:
        return c + n * ((1 + k1 * r2 + k2 * r2 * r2) * R)[..., None]
    rd = np.linspace(0, 1.6, 20001)
    ru = rd.copy()
    for _ in range(60):
        ru = rd / (1 + k1 * ru ** 2 + k2 * ru ** 4)
    ratio = np.interp(np.sqrt(r2), rd, ru / np.maximum(rd, 1e-12))
    ratio = np.where(r2 > 0, ratio, 1.0)
    return c + n * (ratio * R)[..., None]


def _apply(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Homography on a ``(..., 2)`` array of points."""
    H = np.asarray(H, float)
    x, y = pts[..., 0], pts[..., 1]
    w = H[2, 0] * x + H[2, 1] * y + H[2, 2]
    return np.stack([(H[0, 0] * x + H[0, 1] * y + H[0, 2]) / w, (H[1, 0] * x + H[1, 1] * y + H[1, 2]) / w], -1)


def _grid(w: int, h: int) -> np.ndarray:
    ys, xs = np.mgrid[:h, :w].astype(np.float64)
    return np.stack([xs, ys], -1)


def _rigid(angle_deg: float, centre, shift) -> np.ndarray:
    """Rotation by ``angle_deg`` about ``centre`` followed by ``shift`` (3×3)."""
    t = np.deg2rad(angle_deg)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    c = np.asarray(centre, float)
    M = np.eye(3)
    M[:2, :2] = R
    M[:2, 2] = c - R @ c + np.asarray(shift, float)
    return M


# ----------------------------------------------------------------------------- scene

@dataclass
class Layer:
    """A textured plane. ``place_*`` map texture px → scene px in each exposure (they
    differ only for a moving object); ``disparity`` is the phone-image displacement of this
    plane relative to the background (phone px); ``dslr_defocus`` a Gaussian sigma in DSLR
    px (the DSLR's shallower depth of field)."""

    name: str
    texture: np.ndarray                     # RGB uint8
    alpha: np.ndarray | None                # float32 [0, 1]; None: opaque, borders reflected
    place_phone: np.ndarray
    place_dslr: np.ndarray
    disparity: tuple[float, float] = (0.0, 0.0)
    dslr_defocus: float = 0.0
    moving: bool = False


def _photos() -> dict[str, np.ndarray]:
    from skimage import data
    coins = cv2.cvtColor(data.coins(), cv2.COLOR_GRAY2RGB)
    return {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(),
            "rocket": data.rocket(), "motorcycle": data.stereo_motorcycle()[0], "coins": coins}


def _grain(img: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Add fine, slightly blurred luminance grain: real photos at DSLR resolution have
    detail at every scale, an upscaled 512 px sample has none."""
    h, w = img.shape[:2]
    g = cv2.GaussianBlur(rng.normal(0, amount, (h, w)).astype(np.float32), (0, 0), 1.0)
    return np.clip(img.astype(np.float32) + g[..., None] + 0.5, 0, 255).astype(np.uint8)


def _background(size: tuple[int, int], rng: np.random.Generator, photos: dict) -> np.ndarray:
    """A ``size`` collage (3×2 tiles) of the sample photos, in a seed-dependent order."""
    w, h = size
    names = list(photos)
    order = rng.permutation(len(names))
    tiles = [cv2.resize(photos[names[order[k % len(names)]]], (w // 3 + 1, h // 2 + 1), interpolation=cv2.INTER_CUBIC)
             for k in range(6)]
    img = np.vstack([np.hstack(tiles[:3]), np.hstack(tiles[3:])])[:h, :w]
    return _grain(img, rng, 8.0)


def _blob(w: int, h: int, rng: np.random.Generator, edge_px: float = 1.5) -> np.ndarray:
    """An antialiased irregular rounded mask filling a ``w×h`` texture (float32 [0, 1])."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    nx, ny = (xx - (w - 1) / 2) / (w / 2 - 3), (yy - (h - 1) / 2) / (h / 2 - 3)
    theta = np.arctan2(ny, nx)
    wobble = 1 + 0.06 * np.sin(3 * theta + rng.uniform(0, 6.3)) + 0.04 * np.sin(5 * theta + rng.uniform(0, 6.3))
    rho = (np.abs(nx) ** 3 + np.abs(ny) ** 3) ** (1 / 3) / wobble
    return np.clip((1 - rho) * min(w, h) / 2 / edge_px, 0, 1).astype(np.float32)


def _object(photo: np.ndarray, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h = int(round(width * photo.shape[0] / photo.shape[1]))
    tex = _grain(cv2.resize(photo, (width, h), interpolation=cv2.INTER_CUBIC), rng, 8.0)
    return tex, _blob(width, h, rng)


# ----------------------------------------------------------------------------- cases

@dataclass
class CaseParams:
    """Everything that defines a simulated shoot (JSON-able; recorded with the truth)."""

    case: str
    phone_size: tuple[int, int]                      # (w, h) phone px
    dslr_ratio: float = 1.5                          # DSLR width / phone width (pixels)
    coverage: float = 0.88                           # phone field of view / DSLR's, by width
    rotation_deg: float = 0.0                        # phone vs DSLR roll
    perspective: tuple[float, float] = (0.0, 0.0)    # homography's projective terms × DSLR side
    offset: tuple[float, float] = (0.0, 0.0)         # phone centre offset, fraction of the phone frame
    k_phone: tuple[float, float] = (0.0, 0.0)        # radial (k1, k2), radius over the half-diagonal
    k_dslr: tuple[float, float] = (0.0, 0.0)
    disparities: tuple[float, ...] = ()              # phone px, one per extra depth layer (middle, fore)
    baseline_dir_deg: float = 8.0                    # direction of the lens baseline in the image
    motion_px: float = 0.0                           # moving object's displacement between exposures (phone px)
    motion_deg: float = 0.0                          # and its rotation ("sway")
    isp: str = "mild"                                # mild | full
    dslr_defocus: tuple[float, float] = (0.0, 0.0)   # background / foreground blur sigma in DSLR px
    dslr_focus_falloff: tuple[float, float] = (0.0, 0.0)  # DSLR blur sigma (px) reached at the bottom, share of rows
    phone_jpeg: int = 90
    dslr_jpeg: int = 95
    seed: int = 0

    @property
    def dslr_size(self) -> tuple[int, int]:
        w, h = self.phone_size
        return int(round(w * self.dslr_ratio)), int(round(h * self.dslr_ratio))


def case_params(case: str, phone_size: tuple[int, int] = (1600, 1200), seed: int = 0) -> CaseParams:
    """The parameters of one named case (``CASES``) with seed-dependent jitter.

    Distortion is relative (it grows with the frame); disparities and motion are in phone
    px at any ``phone_size`` (so small test versions fail the same way as big ones).
    """
    if case not in CASES:
        raise ValueError(f"unknown case {case!r}; choose one of {', '.join(CASES)}")
    rng = np.random.default_rng([seed, _CASE_STREAM[case]])
    j = lambda v, f=0.2: float(v * (1 + rng.uniform(-f, f)))  # noqa: E731
    p = CaseParams(case, tuple(phone_size), seed=seed, rotation_deg=float(rng.uniform(-1.5, 1.5)),
                   perspective=tuple(float(v) for v in rng.uniform(-0.02, 0.02, 2)),
                   offset=tuple(float(v) for v in rng.uniform(-0.02, 0.02, 2)),
                   dslr_ratio=float(rng.uniform(1.35, 1.55)))
    if case in ("distortion", "combined"):
        p.k_phone, p.k_dslr = (j(-0.022), j(0.004)), (j(0.015), j(-0.003))
    if case in ("parallax", "combined"):
        p.disparities = (j(2.5), j(5.0))
        p.baseline_dir_deg = float(rng.uniform(-15, 15))
    if case in ("moving", "combined"):
        p.motion_px, p.motion_deg = j(6.0), float(rng.choice([-1, 1]) * j(1.5))
    if case == "combined":        # the DSLR focuses on the middle layer: the foreground is out of focus
        p.isp, p.dslr_defocus, p.phone_jpeg, p.dslr_jpeg = "full", (j(0.6), j(1.2)), 78, 92
    elif case == "processing":    # one plane: the DSLR's depth of field shows as a falloff at the bottom
        p.isp, p.dslr_defocus, p.phone_jpeg, p.dslr_jpeg = "full", (j(0.5), 0.0), 78, 92
        p.dslr_focus_falloff = (j(3.0), 0.25)
    else:
        p.phone_jpeg = int(rng.integers(88, 96))
    return p


def _phone_homography(p: CaseParams) -> np.ndarray:
    """Scene (DSLR ideal px) → phone ideal px: the central ``coverage`` of the DSLR view,
    rolled, shifted and in slight perspective."""
    (dw, dh), (pw, ph) = p.dslr_size, p.phone_size
    s = pw / (p.coverage * dw)
    cd = np.array([(dw - 1) / 2, (dh - 1) / 2])
    cp = np.array([(pw - 1) / 2, (ph - 1) / 2]) + np.asarray(p.offset) * [pw, ph]
    P = np.eye(3)
    P[2, :2] = np.asarray(p.perspective) / max(dw, dh)
    A = _rigid(p.rotation_deg, (0, 0), (0, 0))
    A[:2, :2] *= s
    H = A @ P @ translation(-cd[0], -cd[1])
    q = _apply(H, cd)
    H = translation(*(cp - q)) @ H
    return H / H[2, 2]


def build_scene(p: CaseParams) -> list[Layer]:
    """The layers of a case, back to front, placed in scene (DSLR ideal) coordinates."""
    rng = np.random.default_rng([p.seed, 7])
    photos = _photos()
    dw, dh = p.dslr_size
    margin = int(0.15 * max(dw, dh))
    bg_tex = _background((dw + 2 * margin, dh + 2 * margin), rng, photos)
    place = translation(-margin, -margin)
    layers = [Layer("background", bg_tex, None, place, place, dslr_defocus=p.dslr_defocus[0])]
    scale_phone = p.phone_size[0] / (p.coverage * dw)     # phone px per scene px
    a = np.deg2rad(p.baseline_dir_deg)
    direction = np.array([np.cos(a), np.sin(a)])
    spots = [("middle", "chelsea", 0.40, (0.29, 0.40)), ("foreground", "coffee", 0.40, (0.68, 0.64))]
    for (name, photo, width, (fx, fy)), d in zip(spots, p.disparities):
        tex, alpha = _object(photos[photo], int(width * dw), rng)
        pl = translation(fx * dw - tex.shape[1] / 2, fy * dh - tex.shape[0] / 2)
        defocus = 0.0 if name == "middle" else p.dslr_defocus[1]   # the DSLR focuses on the middle
        layers.append(Layer(name, tex, alpha, pl, pl, tuple(float(v) for v in d * direction), defocus))
    if p.motion_px:
        tex, alpha = _object(photos["astronaut"][40:330, 120:400], int(0.22 * dw), rng)
        pl = translation(0.52 * dw - tex.shape[1] / 2, 0.24 * dh - tex.shape[0] / 2)
        centre = (0.52 * dw, 0.24 * dh + tex.shape[0] / 2)     # sways about its base
        shift = np.array([np.cos(0.6), np.sin(0.6)]) * p.motion_px / scale_phone
        d = p.disparities[0] * direction if p.disparities else np.zeros(2)
        layers.append(Layer("moving", tex, alpha, pl, _rigid(p.motion_deg, centre, shift) @ pl,
                            tuple(float(v) for v in d), p.dslr_defocus[1], True))
    return layers


# ----------------------------------------------------------------------------- rendering

def _blurred(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigma) if sigma > 0.05 else img


def _render(layers: list[Layer], cam_from_texture: list[np.ndarray], ideal: np.ndarray,
            sigmas: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Composite ``layers`` back to front at the camera pixels whose ideal coordinates are
    ``ideal`` (``(h, w, 2)``); ``cam_from_texture[k]`` maps layer ``k``'s texture px → this
    camera's ideal coords; ``sigmas[k]`` is the blur in texture px applied before sampling
    (anti-aliasing, lens, defocus).
    Returns the RGB float32 image (0–255) and the front-most layer index per pixel."""
    h, w = ideal.shape[:2]
    out = np.zeros((h, w, 3), np.float32)
    ids = np.full((h, w), -1, np.int8)
    for k, (L, M) in enumerate(zip(layers, cam_from_texture)):
        uv = _apply(np.linalg.inv(M), ideal).astype(np.float32)
        tex = _blurred(L.texture, sigmas[k])
        if L.alpha is None:
            out = cv2.remap(tex, uv[..., 0], uv[..., 1], cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT_101).astype(np.float32)
            ids[:] = k
            continue
        a = cv2.remap(_blurred(L.alpha, sigmas[k]), uv[..., 0], uv[..., 1], cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        c = cv2.remap(tex, uv[..., 0], uv[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out += (c.astype(np.float32) - out) * a[..., None]
        ids[a >= 0.5] = k
    return out, ids



@dataclass
class Truth:
    """The dense ground truth of a shoot, per phone pixel (arrays of the phone's ``(h, w)``).

    ``dslr_xy`` float32 ``(h, w, 2)``: the DSLR source pixel position (x, y) showing the
    scene point that this phone pixel shows (green channel). ``valid``: that point is
    visible in the DSLR photo too (inside the frame, not occluded by a nearer layer or by
    the moved object). ``moving``: the phone pixel shows the moving object, or its true
    DSLR position does. ``depth_edge``: within 2 px of a boundary between layers in the
    phone image. ``params``: the :class:`CaseParams` plus ``dslr_size``, the layer names and
    ``phone_homography`` (scene = DSLR ideal px → phone ideal px, the background's)."""

    dslr_xy: np.ndarray
    valid: np.ndarray
    moving: np.ndarray
    depth_edge: np.ndarray
    params: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, dslr_xy=self.dslr_xy, valid=self.valid, moving=self.moving, depth_edge=self.depth_edge,
                 params=np.array(json.dumps(self.params)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "Truth":
        with np.load(path) as z:
            return cls(z["dslr_xy"], z["valid"], z["moving"], z["depth_edge"], json.loads(str(z["params"])))


@dataclass
class Shoot:
    phone: np.ndarray          # RGB uint8, phone_size
    dslr: np.ndarray           # RGB uint8, dslr_size
    truth: Truth


def simulate(case: str | CaseParams, phone_size: tuple[int, int] = (1600, 1200), seed: int = 0) -> Shoot:
    """Render one shoot of ``case`` (a name of ``CASES`` or explicit :class:`CaseParams`)."""
    p = case if isinstance(case, CaseParams) else case_params(case, phone_size, seed)
    rng = np.random.default_rng([p.seed, 11])
    layers = build_scene(p)
    (pw, ph), (dw, dh) = p.phone_size, p.dslr_size
    G = _phone_homography(p)
    scale_phone = np.sqrt(abs(np.linalg.det(G[:2, :2])))   # phone px per scene px (about; perspective is slight)

    # DSLR: scene coords are its ideal coords; it samples nearly 1:1, with a sharp lens and its defocus.
    d_ideal = _radial(_grid(dw, dh), (dw, dh), p.k_dslr, inverse=True)
    d_sig = [float(np.hypot(0.35, L.dslr_defocus)) for L in layers]
    dslr_lin, dslr_ids = _render(layers, [L.place_dslr for L in layers], d_ideal, d_sig)

    # phone: T(d_k)·G per layer, after its own distortion; anti-aliasing + a softer lens.
    p_ideal = _radial(_grid(pw, ph), (pw, ph), p.k_phone, inverse=True)
    cams = [translation(*L.disparity) @ G for L in layers]
    tex_per_px = 1 / scale_phone
    p_sig = [float(np.sqrt(0.25 * max(tex_per_px ** 2 - 1, 0) + (0.55 * tex_per_px) ** 2)) for _ in layers]
    phone_lin, phone_ids = _render(layers, [c @ L.place_phone for c, L in zip(cams, layers)], p_ideal, p_sig)

    # ground truth: the front layer's scene point, moved to the DSLR exposure, through the DSLR's distortion
    xy = np.zeros((ph, pw, 2))
    for k, L in enumerate(layers):
        sel = phone_ids == k
        if not sel.any():
            continue
        scene = _apply(np.linalg.inv(cams[k]), p_ideal[sel])
        if L.moving:
            scene = _apply(L.place_dslr @ np.linalg.inv(L.place_phone), scene)
        xy[sel] = _radial(scene, (dw, dh), p.k_dslr)
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= dw - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= dh - 1)
    qx = np.clip(np.rint(xy[..., 0]), 0, dw - 1).astype(int)
    qy = np.clip(np.rint(xy[..., 1]), 0, dh - 1).astype(int)
    seen = dslr_ids[qy, qx]
    valid = inside & (seen == phone_ids)
    moving_layers = [k for k, L in enumerate(layers) if L.moving]
    moving = np.isin(phone_ids, moving_layers) | (inside & np.isin(seen, moving_layers))
    kernel = np.ones((3, 3), np.uint8)
    ids8 = (phone_ids + 1).astype(np.uint8)
    edge = cv2.dilate(ids8, kernel) != cv2.erode(ids8, kernel)
    edge = cv2.dilate(edge.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)

    phone = phone_isp(phone_lin, p, rng)
    dslr = dslr_isp(dslr_lin, p, rng)
    params = asdict(p) | {"simulator_version": SIMULATOR_VERSION, "dslr_size": list(p.dslr_size),
                          "layers": [L.name for L in layers],
                          "phone_homography": G.tolist()}
    return Shoot(phone, dslr, Truth(xy.astype(np.float32), valid, moving, edge, params))


def write_shoot(root: str | Path, name: str, shoot: Shoot, phone_dir: str = "phone", dslr_dir: str = "dslr") -> None:
    """Write ``root/raw/<phone_dir>/<name>.png``, ``root/raw/<dslr_dir>/<name>.png`` (lossless:
    the simulated cameras' JPEG artefacts are already in the pixels) and the truth
    ``root/truth/<name>.npz``: the layout :func:`dpedkit.testing.scoring.score_against_truth` and the benchmark use."""
    from dpedkit.imageio import write_image
    root = Path(root)
    write_image(root / "raw" / phone_dir / f"{name}.png", shoot.phone)
    write_image(root / "raw" / dslr_dir / f"{name}.png", shoot.dslr)
    shoot.truth.save(root / "truth" / f"{name}.npz")


