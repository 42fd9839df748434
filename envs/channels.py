"""Time-correlated wireless channels shared by the env families: AR(1) (Gauss-Markov) Rayleigh
fading and Gauss-Markov mobility, one implementation for the MEC env (``mec/generator.py``) and
the FedLoRA env's correlated mode (``fedlora/generator.py``).

Every function draws from the ``rng`` passed in, in a fixed order and a fixed number of draws
(never depending on the values), so a process is a pure function of the generator's state; arrays
may carry any leading batch axes (one env, or a batch of copies).

Small-scale fading h ~ CN(0, 1) is held as its real and imaginary parts, each N(0, 1/2); the
power gain |h|^2 = re^2 + im^2 is then Exp(1) (Rayleigh amplitude). AR(1) in time,

    h(t+1) = rho h(t) + sqrt(1 - rho^2) w(t),   w(t) ~ CN(0, 1) i.i.d.,

keeps CN(0, 1) stationary, with corr(h(t), h(t+1)) = rho and corr(|h(t)|^2, |h(t+1)|^2) = rho^2
(Jakes' model of a device at Doppler f_D with rounds of duration dt gives rho = J0(2 pi f_D dt)).

Gauss-Markov mobility (Liang and Haas, in vector form): per device a 2-D velocity

    v(t+1) = a v(t) + (1 - a) v_mean + sqrt(1 - a^2) sigma w(t),   w(t) ~ N(0, I_2),

stationary N(v_mean, sigma^2 I_2); a in [0, 1) is the memory (0: a fresh velocity every round).
Positions move by v dt and are reflected back into the area at its boundary
(:func:`reflect_in_square`, :func:`reflect_in_disc`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ar1_fading",
    "fading_power",
    "gauss_markov_start",
    "gauss_markov_velocity",
    "rayleigh_fading",
    "reflect_in_disc",
    "reflect_in_square",
]


def rayleigh_fading(
    rng: np.random.Generator, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Fresh Rayleigh small-scale fading h ~ CN(0, 1): ``(re, im)``, each N(0, 1/2) of ``shape``
    (the real parts drawn first, then the imaginary parts). The stationary law of
    :func:`ar1_fading`."""
    re = rng.normal(0.0, np.sqrt(0.5), size=shape)
    im = rng.normal(0.0, np.sqrt(0.5), size=shape)
    return re, im


def ar1_fading(
    rng: np.random.Generator, re: np.ndarray, im: np.ndarray, rho: float
) -> tuple[np.ndarray, np.ndarray]:
    """One AR(1) (Gauss-Markov) step of Rayleigh fading: h' = rho h + sqrt(1 - rho^2) w with
    w ~ CN(0, 1), as ``(re', im')`` (new arrays; the real innovations are drawn first).

    Args:
        rng: the generator (draws ``2 re.size`` standard normals, whatever ``rho``).
        re, im: real and imaginary parts of h(t), any (equal) shape.
        rho: correlation of h from one step to the next, in [0, 1]; 0 gives i.i.d. CN(0, 1)
            draws, 1 a frozen channel. corr(|h|^2 at t, at t + 1) = rho^2.
    """
    s = np.sqrt((1.0 - rho * rho) / 2.0)
    re = rho * re + s * rng.normal(size=np.shape(re))
    im = rho * im + s * rng.normal(size=np.shape(im))
    return re, im


def fading_power(re: np.ndarray, im: np.ndarray) -> np.ndarray:
    """|h|^2 = re^2 + im^2, the small-scale power gain (Exp(1) under CN(0, 1) fading)."""
    return np.asarray(re) ** 2 + np.asarray(im) ** 2


def gauss_markov_start(
    rng: np.random.Generator, shape: tuple[int, ...], sigma: float, mean: np.ndarray | None = None
) -> np.ndarray:
    """A velocity from the stationary law of :func:`gauss_markov_velocity`: N(mean, sigma^2) per
    component, ``shape`` (..., 2) (m per unit time). ``mean=None``: zero mean (isotropic)."""
    v = rng.normal(0.0, sigma, size=shape)
    return v if mean is None else v + mean


def gauss_markov_velocity(
    rng: np.random.Generator,
    velocity: np.ndarray,
    memory: float,
    sigma: float,
    mean: np.ndarray | None = None,
) -> np.ndarray:
    """One Gauss-Markov step of a velocity: v' = a v + (1 - a) v_mean + sqrt(1 - a^2) sigma w,
    w ~ N(0, I) (a new array; one normal per entry of ``velocity``).

    Args:
        rng: the generator.
        velocity: v(t), shape (..., 2), in m per unit time (per round, or m/s).
        memory: a in [0, 1): 0 draws a fresh velocity every step; near 1 keeps it.
        sigma: standard deviation of each velocity component in the stationary law (the RMS
            speed is sqrt(2) sigma with a zero mean).
        mean: v_mean, broadcastable to ``velocity``; ``None`` = 0 (isotropic motion).
    """
    w = rng.normal(0.0, sigma, size=np.shape(velocity))
    v = memory * velocity
    if mean is not None:
        v = v + (1.0 - memory) * mean
    return v + np.sqrt(1.0 - memory * memory) * w


def reflect_in_square(
    pos: np.ndarray, vel: np.ndarray, side: float
) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``pos`` (..., 2) reflected back into [0, side]^2 at the walls they crossed, and
    the velocity components normal to those walls reversed; a position still outside after one
    reflection (a step longer than the square) is clipped to it."""
    low, high = pos < 0.0, pos > side
    pos = np.where(low, -pos, np.where(high, 2 * side - pos, pos))
    vel = np.where(low | high, -vel, vel)
    return np.clip(pos, 0.0, side), vel


def reflect_in_disc(
    pos: np.ndarray, vel: np.ndarray, center: tuple[float, float], radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``pos`` (..., 2) outside the disc of ``radius`` around ``center`` mirrored back
    across its boundary along their radius (distance r from the centre becomes 2 R - r), and the
    outward radial component of their velocity ``vel`` (..., 2) reversed (v - 2 (v.n) n, n the
    outward unit normal). A position more than 2 R from the centre (a step longer than the disc)
    ends at the centre. Positions inside are returned unchanged."""
    c = np.asarray(center, dtype=np.float64)
    d = pos - c
    r = np.hypot(d[..., 0], d[..., 1])
    out = r > radius
    if not out.any():
        return pos, vel
    n = d / np.where(out, r, 1.0)[..., None]
    r_new = np.clip(2.0 * radius - r, 0.0, radius)
    pos = np.where(out[..., None], c + r_new[..., None] * n, pos)
    vn = (vel * n).sum(-1)
    vel = np.where((out & (vn > 0.0))[..., None], vel - 2.0 * vn[..., None] * n, vel)
    return pos, vel
