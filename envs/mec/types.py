"""Typed values of the MEC env: one round's physical instance and one decision."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class MECInstance:
    """Everything the cost model needs for one round (SI units).

    Per user (shape (N,)): ``tokens`` d_n, ``p_max`` (W), ``f_user_max`` (Hz), ``cores_user``
    C_n^U, ``flops_user`` D_n^U (FLOP/cycle/core), ``samples`` k_n, ``energy_budget`` (J per
    round) and ``energy_queue`` (J). Per server (shape (M,)): ``cores_edge`` C_m^E,
    ``flops_edge`` D_m^E, ``f_edge_max`` (Hz), ``b_max`` (Hz). ``gain`` (N, M) is g_nm
    (linear power gain, path loss times |h|^2). Scalars: Upsilon ``num_layers``, ``batch_size``
    B, ``hidden_size`` h, ``bits_per_element``, ``kappa_user``, ``kappa_edge``, ``lipschitz``
    L, ``noise_psd`` sigma^2 (W/Hz).
    """

    gain: np.ndarray
    tokens: np.ndarray
    p_max: np.ndarray
    f_user_max: np.ndarray
    cores_user: np.ndarray
    flops_user: np.ndarray
    samples: np.ndarray
    energy_budget: np.ndarray
    energy_queue: np.ndarray
    cores_edge: np.ndarray
    flops_edge: np.ndarray
    f_edge_max: np.ndarray
    b_max: np.ndarray
    num_layers: int
    batch_size: int
    hidden_size: int
    bits_per_element: float
    kappa_user: float
    kappa_edge: float
    lipschitz: float
    noise_psd: float

    @property
    def num_users(self) -> int:
        """N."""
        return int(self.tokens.shape[0])

    @property
    def num_servers(self) -> int:
        """M."""
        return int(self.b_max.shape[0])

    @property
    def psi(self) -> np.ndarray:
        """psi(d_n): FLOPs per layer per training iteration, shape (N,)."""
        from edgeft.envs.mec.formulas import flops_per_layer

        return flops_per_layer(self.tokens, self.batch_size, self.hidden_size)

    @property
    def bits(self) -> np.ndarray:
        """s(d_n): bits of the intermediate result uploaded by user n, shape (N,)."""
        from edgeft.envs.mec.formulas import activation_bits

        return activation_bits(self.tokens, self.batch_size, self.hidden_size,
                               self.bits_per_element)

    def replace(self, **changes: object) -> MECInstance:
        """A copy with some fields replaced."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return MECInstance(**values)  # type: ignore[arg-type]

    def subset(self, users: np.ndarray) -> MECInstance:
        """The instance restricted to some users (servers unchanged)."""
        per_user = ("tokens", "p_max", "f_user_max", "cores_user", "flops_user", "samples",
                    "energy_budget", "energy_queue")
        changes: dict[str, object] = {k: getattr(self, k)[users] for k in per_user}
        changes["gain"] = self.gain[users]
        return self.replace(**changes)


@dataclass(frozen=True)
class MECDecision:
    """One round's decision, per user (shape (N,), SI units).

    ``alpha`` layers trained locally (integer-valued in the env; real-valued inside the
    relaxation), ``server`` edge server index, ``power`` p_n (W), ``bandwidth`` b_{n,m(n)} (Hz),
    ``freq_user`` f_n (Hz), ``freq_edge`` f_{n,m(n)} (Hz).
    """

    alpha: np.ndarray
    server: np.ndarray
    power: np.ndarray
    bandwidth: np.ndarray
    freq_user: np.ndarray
    freq_edge: np.ndarray

    def association(self, num_servers: int) -> np.ndarray:
        """chi as a binary (N, M) matrix."""
        chi = np.zeros((self.server.shape[0], num_servers))
        chi[np.arange(self.server.shape[0]), self.server] = 1.0
        return chi
