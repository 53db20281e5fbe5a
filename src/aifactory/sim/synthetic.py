"""A synthetic rigid-job workload in the style of Lublin & Feitelson (JPDC 63(11), 2003).

The model keeps the structure of theirs; the constants below are this project's, chosen to give
a realistic mix, and are the whole definition (no other hidden knobs):

* **Size**: serial with probability ``p_serial``; otherwise ``log2(size)`` is drawn from a
  two-stage uniform distribution: ``[1, u_med]`` with probability ``u_prob``, else
  ``[u_med, log2(machine)]``, with ``u_med = log2(machine) - 2.5``. With probability ``p_pow2``
  the size is rounded to a power of two.
* **Run time**: ``ln(run)`` follows a hyper-gamma distribution, a mix of Gamma(4.2, 0.94)
  (short jobs, around a minute) and Gamma(312, 0.03) (long jobs, around three hours) whose
  weight on the short part falls linearly with size, ``p = clip(0.78 - 0.0054 * size, 0.05,
  0.95)``, so wide jobs run longer, as in the measured logs. Run times are capped at 36 h.
* **Estimates**: a share ``p_exact`` of users request exactly their run time; the rest request
  run time x U(1, 5) rounded up to the next common limit (5 min ... 36 h).
* **Arrivals**: gamma inter-arrival times (shape 0.5: bursty) warped by a daily cycle (rate
  ``1 + 0.6 sin``, peak mid-afternoon), then scaled so the offered load is ``load``.
* **Users**: Zipf-distributed user ids (a few heavy users, a long tail).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aifactory.errors import Invalid
from aifactory.sim.model import Job, Trace

__all__ = ["WorkloadModel", "generate"]

_LIMITS = np.array([300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 64800, 86400, 129600])
_DAY = 86400.0
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class WorkloadModel:
    """Parameters of the synthetic workload (see the module docstring)."""

    machine: int = 256
    load: float = 0.75
    p_serial: float = 0.24
    p_pow2: float = 0.75
    u_prob: float = 0.86
    p_exact: float = 0.15
    users: int = 400


def _sizes(m: WorkloadModel, rng: np.random.Generator, n: int) -> I64:
    u_hi = np.log2(m.machine)
    u_med = max(1.0, u_hi - 2.5)
    low = rng.uniform(1.0, u_med, n)
    high = rng.uniform(u_med, u_hi, n)
    exponent = np.where(rng.random(n) < m.u_prob, low, high)
    exponent = np.where(rng.random(n) < m.p_pow2, np.round(exponent), exponent)
    sizes = np.round(np.exp2(exponent)).astype(np.int64)
    sizes[rng.random(n) < m.p_serial] = 1
    return np.clip(sizes, 1, m.machine)


def _runtimes(sizes: I64, rng: np.random.Generator) -> I64:
    n = sizes.size
    p_short = np.clip(0.78 - 0.0054 * sizes, 0.05, 0.95)
    short = rng.gamma(4.2, 0.94, n)
    long = rng.gamma(312.0, 0.03, n)
    log_run = np.where(rng.random(n) < p_short, short, long)
    return np.clip(np.round(np.exp(log_run)), 1, 129600).astype(np.int64)


def _estimates(m: WorkloadModel, runs: I64, rng: np.random.Generator) -> I64:
    n = runs.size
    wanted = runs * rng.uniform(1.0, 5.0, n)
    index = np.minimum(np.searchsorted(_LIMITS, wanted), _LIMITS.size - 1)
    rounded = np.maximum(_LIMITS[index], runs)
    return np.where(rng.random(n) < m.p_exact, runs, rounded).astype(np.int64)


def _arrivals(work: float, m: WorkloadModel, rng: np.random.Generator, n: int) -> I64:
    gaps = rng.gamma(0.5, 2.0, n)  # mean 1 in "operational time"
    op_time = np.cumsum(gaps)
    span = work / (m.machine * m.load)
    # Warp operational time to wall time through the inverse cumulative daily intensity.
    grid = np.linspace(0.0, span * 1.05 + _DAY, 4096 + int(span / 3600))
    intensity = 1.0 + 0.6 * np.sin(2 * np.pi * (grid / _DAY - 0.375))
    cumulative = np.concatenate(([0.0], np.cumsum(intensity[:-1] * np.diff(grid))))
    target = op_time / op_time[-1] * cumulative[np.searchsorted(grid, span)]
    wall: I64 = np.round(np.interp(target, cumulative, grid)).astype(np.int64)
    return wall


def generate(n: int, model: WorkloadModel | None = None, seed: int = 1) -> Trace:
    """``n`` jobs from the model, in submit order, reproducible from ``seed``.

    Raises:
        Invalid: ``n`` < 1, or a machine smaller than 2 units, or a load outside (0, 2].
    """
    m = model or WorkloadModel()
    if n < 1 or m.machine < 2 or not 0 < m.load <= 2:
        raise Invalid("synthetic workload needs n >= 1, machine >= 2 and 0 < load <= 2")
    rng = np.random.default_rng(seed)
    sizes = _sizes(m, rng, n)
    runs = _runtimes(sizes, rng)
    reqs = _estimates(m, runs, rng)
    submits = _arrivals(float(np.sum(sizes * runs)), m, rng, n)
    users = (rng.zipf(1.6, n) - 1) % m.users
    columns = zip(
        submits.tolist(), runs.tolist(), reqs.tolist(), sizes.tolist(), users.tolist(), strict=True
    )
    jobs = [Job(i, s, r, q, w, u) for i, (s, r, q, w, u) in enumerate(columns, start=1)]
    return Trace(f"synthetic-lublin-{n}", jobs, m.machine, "procs")
