"""Not part of dpedkit's public API: simulated cameras and scorers for its tests, benchmarks
and demo. May change without notice.

* :mod:`dpedkit.testing.synth` — a phone photo re-imaged from any RGB image through a known
  homography (tests, benchmarks, the demo);
* :mod:`dpedkit.testing.shoots` — realistic shoots of a layered scene with a dense per-pixel
  truth (distortion, depths, a moving object, the cameras' processing in
  :mod:`dpedkit.testing.isp`);
* :mod:`dpedkit.testing.scoring` — the true misalignment of accepted patches against that truth.
"""
