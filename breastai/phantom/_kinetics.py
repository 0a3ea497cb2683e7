"""Contrast kinetics and signal equations of the phantom (numpy only).

Parker population AIF (whole blood, Parker et al. MRM 2006;56:993, population-fit parameters), the
extended Tofts model evaluated on a fine grid with the exact recursive exponential convolution, the
spoiled-gradient-echo (SPGR) signal equation and the BI-RADS curve-type rule.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "classify_curve",
    "extended_tofts",
    "parker_aif",
    "spgr_signal",
]

FloatArray = NDArray[np.float64]

# Parker 2006 population-fit values (t in minutes, concentrations in mM).
_A1, _A2 = 0.809, 0.330
_T1, _T2 = 0.17046, 0.365
_S1, _S2 = 0.0563, 0.132
_ALPHA, _BETA, _S, _TAU = 1.050, 0.1685, 38.078, 0.483


def parker_aif(t_s: ArrayLike, *, arrival_s: float = 0.0) -> FloatArray:
    """Whole-blood Parker AIF ``Cb(t)`` in mM.

    Parameters
    ----------
    t_s:
        Times in seconds after injection start.
    arrival_s:
        Bolus arrival time: the Parker time origin is shifted by this many seconds; ``Cb`` is 0
        before it.

    Returns
    -------
    numpy.ndarray
        Concentration in mM (peak ≈6.07 mM about 10 s after arrival).
    """
    t = (np.asarray(t_s, dtype=np.float64) - arrival_s) / 60.0
    g1 = _A1 / (_S1 * np.sqrt(2 * np.pi)) * np.exp(-((t - _T1) ** 2) / (2 * _S1**2))
    g2 = _A2 / (_S2 * np.sqrt(2 * np.pi)) * np.exp(-((t - _T2) ** 2) / (2 * _S2**2))
    with np.errstate(over="ignore"):
        sig = _ALPHA * np.exp(-_BETA * t) / (1.0 + np.exp(-_S * (t - _TAU)))
    out = g1 + g2 + sig
    return np.where(t >= 0, out, 0.0)


def extended_tofts(
    t_s: ArrayLike,
    cp: ArrayLike,
    *,
    ktrans_per_min: float,
    ve: float,
    vp: float,
    delay_s: float = 0.0,
) -> FloatArray:
    """Extended Tofts tissue concentration on a uniform time grid.

    ``C(t) = vp·Cp(t−δ) + Ktrans·∫ Cp(τ−δ) exp(−kep (t−τ)) dτ`` with ``kep = Ktrans/ve``, evaluated
    with the exact recursive convolution for piecewise-linear ``Cp``.

    Parameters
    ----------
    t_s:
        Uniform time grid in seconds (ascending).
    cp:
        Plasma concentration on that grid (mM).
    ktrans_per_min, ve, vp:
        Transfer constant (/min), extravascular extracellular and plasma volume fractions.
    delay_s:
        Extra arrival delay of this tissue relative to the AIF (seconds).

    Returns
    -------
    numpy.ndarray
        Tissue concentration (mM) on the grid.
    """
    t = np.asarray(t_s, dtype=np.float64)
    c = np.asarray(cp, dtype=np.float64)
    if delay_s:
        c = np.interp(t - delay_s, t, c, left=0.0)
    dt_min = float(t[1] - t[0]) / 60.0 if t.size > 1 else 1.0
    out = vp * c
    if ktrans_per_min <= 0 or ve <= 0:
        return out
    kep = ktrans_per_min / ve
    x = kep * dt_min
    e = np.exp(-x)
    # exact integral of a linear segment convolved with exp(-kep t)
    w0 = (1 - e) / x - e  # weight of c[i-1]
    w1 = 1 - (1 - e) / x  # weight of c[i]
    conv = np.zeros_like(c)
    acc = 0.0
    for i in range(1, c.size):
        acc = acc * e + (w0 * c[i - 1] + w1 * c[i]) / kep
        conv[i] = acc
    return out + ktrans_per_min * conv


def spgr_signal(
    t1_ms: ArrayLike, flip_deg: ArrayLike, tr_ms: float, *, pd: ArrayLike = 1.0
) -> FloatArray:
    """Steady-state spoiled gradient echo signal ``PD·sinα·(1−E1)/(1−cosα·E1)``.

    Parameters
    ----------
    t1_ms:
        Longitudinal relaxation time(s) in ms.
    flip_deg:
        Flip angle(s) in degrees.
    tr_ms:
        Repetition time in ms.
    pd:
        Relative proton density.

    Returns
    -------
    numpy.ndarray
        Signal (arbitrary units), broadcast over the inputs.
    """
    a = np.deg2rad(np.asarray(flip_deg, dtype=np.float64))
    e1 = np.exp(-tr_ms / np.asarray(t1_ms, dtype=np.float64))
    out: FloatArray = np.asarray(pd, dtype=np.float64) * np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1)
    return out


def classify_curve(
    signal: ArrayLike, times_s: ArrayLike, *, initial_window_s: float = 150.0
) -> tuple[str, str]:
    """BI-RADS kinetic curve type of a mean lesion signal curve.

    Initial phase (post phases centred within ``initial_window_s`` of injection start, i.e. about
    2 min after bolus arrival; at least the first post phase):
    peak relative enhancement ``slow`` < 50 %, ``medium`` 50-100 %, ``fast`` > 100 %. Delayed
    phase: the last phase against that initial peak, ``persistent`` > +10 %, ``plateau`` within
    ±10 %, ``washout`` < −10 %.

    Parameters
    ----------
    signal:
        Mean signal per phase, phase 0 = pre-contrast.
    times_s:
        Phase times in seconds after injection.
    initial_window_s:
        End of the initial phase, seconds after injection start.

    Returns
    -------
    tuple of str
        ``(initial, delayed)``; delayed is ``"unknown"`` with fewer than three phases.
    """
    s = np.asarray(signal, dtype=np.float64)
    t = np.asarray(times_s, dtype=np.float64)
    if s.size < 2 or s[0] <= 0:
        return "unknown", "unknown"
    early = [k for k in range(1, s.size) if t[k] <= initial_window_s] or [1]
    k_peak = max(early, key=lambda k: s[k])
    re = (s[k_peak] - s[0]) / s[0]
    initial = "slow" if re < 0.5 else ("medium" if re <= 1.0 else "fast")
    if s.size < 3 or k_peak == s.size - 1:
        return initial, "unknown"
    change = (s[-1] - s[k_peak]) / s[k_peak]
    delayed = "persistent" if change > 0.10 else ("washout" if change < -0.10 else "plateau")
    return initial, delayed
