"""stable-baselines3 policies built for the edgeft envs' structure.

:class:`MECSharedPolicy` (``"mec-shared"`` in ``TrainConfig.policy``) acts in the MEC env's
``discrete`` mode on ``mec-users`` features. Users are exchangeable (the cost is a sum over
users and the resource rule treats them alike), so every user's action logits come from one
network applied to that user's features and a context that does not depend on the users'
order: the mean of all users' embeddings, the per-server features and the round share. The
policy is equivariant to permuting the users (permuting them in the features permutes the
per-user logits alike) and its value is invariant; its size does not depend on the number of
users. Sizes are read from the spaces: N and M from the ``MultiDiscrete`` action space, the
feature layout from :func:`mec_users_layout`.

Per user n with features u_n, server features s (3 M) and round share r::

    e_n = phi([u_n, s, r])                          user embedding (actor and critic each own one)
    z_n = psi([e_n, mean_k e_k])                    per-user latent
    y_nm = chi([z_n, g_nm / max_k g_nk, s_m])       per (user, server) pair
    alpha logits_n = W z_n + b,  server logit_nm = w' y_nm + b'    shared heads
    V = rho([mean_k e'_k, s, r])                    value: pooled over users

The logits are laid out as the ``MultiDiscrete([Upsilon - 1] * N + [M] * N)`` action space
expects (``edgeft.envs.mec.actions``): the N alpha blocks, then the N server blocks.

The observation normalisation of a training run (VecNormalize) keeps statistics per feature
position, so the users' slots are normalised with slightly different statistics; the policy is
exactly equivariant in the features it sees, and the run's statistics of exchangeable users
converge to each other.

:class:`FedLoRASharedPolicy` (``"fedlora-shared"``) does the same for the FedLoRA env's
``count``, ``subset``, ``score`` (and ``bandwidth``) modes, on ``fedlora-devices`` features
(``edgeft.agents.transforms``), whose per-device features mean the same for every K and need no
VecNormalize (run it with ``normalize_obs`` off: per-position statistics would tie the agent to
K). Per device k with features u_k and the global block g::

    e_k = phi([u_k, g])                              device embedding (actor and critic own one)
    c   = [mean_k e_k, max_k e_k, g]                 permutation-invariant context
    z_k = psi([e_k, c])                              per-device latent
    l_k = w z_k + b                                  one shared head: logit / mean of device k
    V   = rho([mean_k e'_k, max_k e'_k, g])          value: pooled over devices

``subset``: l_k is device k's Bernoulli logit; ``score`` / ``bandwidth`` (Box): l_k is device k's
Gaussian mean, with one log-std shared by all devices; ``count`` (Discrete(K + 1), "schedule the
n strongest"): the devices' l in channel order (the ``rank`` feature) s_1..s_K give the K + 1
logits of n, either ``"stop"`` (default: logit(n) = s_n, "the n-th strongest device is the last
one scheduled", and logit(0) from the pooled latents [mean_k z_k, max_k z_k]) or ``"cumsum"``
(logit(n) = s_1 + ... + s_n, logit(0) = 0: s_j is the log-odds of adding the j-th strongest
device, like the increments of the Lyapunov objective J_n; its logits are monotone in n
wherever all s_j share a sign, and in the setting of the learning test of
``tests/agents/test_fedlora_shared.py`` PPO moved probability mass to the per-round optimum
more slowly with it). No parameter depends on K: the
weights of a policy built for one K load into a policy built for any other
(:func:`fedlora_devices_layout`). For SAC and TD3 (``score`` mode),
:class:`FedLoRASharedSACPolicy` and :class:`FedLoRASharedTD3Policy` build their actors on the
same per-device latent z_k (SAC: a mean and a log-std per device; TD3: tanh of a mean), and
critics that embed each device with its own action, [u_k, a_k, g], and pool the embeddings
(mean and max) into Q.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from edgeft.agents.transforms import FEDLORA_DEVICE_FEATURES, FEDLORA_GLOBAL_FEATURES
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy, ContinuousCritic
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN, SACPolicy
from stable_baselines3.sac.policies import Actor as SACActor
from stable_baselines3.td3.policies import Actor as TD3Actor
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

#: per-user ``mec-users`` features besides the M gain ratios: best gain, log tokens, log k_n,
#: p_max, log f_max, cores, log FLOP/cycle, queue, budget (``edgeft.agents.transforms``)
MEC_USERS_EXTRA = 9
#: per-server ``mec-users`` blocks (each M long): log b_max, log f_edge_max, log C D
MEC_SERVER_BLOCKS = 3
#: features after the server blocks: the round share
MEC_GLOBAL = 1


@dataclass(frozen=True)
class MECUsersLayout:
    """Where the ``mec-users`` transform puts each user's and each server's features.

    Features: N user blocks of ``user_dim`` (user-major), then ``server_blocks`` blocks of M
    (one per server quantity), then ``global_dim`` features (the round share).
    """

    num_users: int
    num_servers: int
    user_dim: int
    server_blocks: int = MEC_SERVER_BLOCKS
    global_dim: int = MEC_GLOBAL

    @property
    def size(self) -> int:
        """The feature vector's length."""
        return (
            self.num_users * self.user_dim + self.server_blocks * self.num_servers + self.global_dim
        )

    @property
    def context_dim(self) -> int:
        """Length of the user-independent context: server features and round share."""
        return self.server_blocks * self.num_servers + self.global_dim

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(users (B, N, user_dim), context (B, context_dim))`` of features ``x`` (B, size)."""
        cut = self.num_users * self.user_dim
        return x[:, :cut].reshape(-1, self.num_users, self.user_dim), x[:, cut:]


def mec_users_layout(num_users: int, num_servers: int) -> MECUsersLayout:
    """The layout of the ``mec-users`` features for N users and M servers."""
    return MECUsersLayout(int(num_users), int(num_servers), int(num_servers) + MEC_USERS_EXTRA)


def _mlp(sizes: list[int], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), activation()]
    return nn.Sequential(*layers)


class MECSharedExtractor(nn.Module):
    """SB3's ``mlp_extractor`` of :class:`MECSharedPolicy`: per-user actor latents, flattened
    user-major (B, N * per_user), and the critic's pooled latent (B, hidden).

    A user's actor latent is z_n (``hidden_dim``), followed with ``pair_dim > 0`` by one latent
    per server, y_nm = chi([z_n, g_nm / max_k g_nk, server m's features]) (``pair_dim`` each):
    the server logits then come from one map shared by all (user, server) pairs.
    """

    def __init__(
        self,
        layout: MECUsersLayout,
        embed_dim: int,
        hidden_dim: int,
        activation: type[nn.Module],
        pair_dim: int = 0,
    ) -> None:
        super().__init__()
        self.layout = layout
        self.hidden_dim, self.pair_dim = hidden_dim, pair_dim
        inp = layout.user_dim + layout.context_dim
        self.actor_embed = _mlp([inp, embed_dim, embed_dim], activation)
        self.actor_user = _mlp([2 * embed_dim, hidden_dim], activation)
        if pair_dim:
            self.actor_pair = _mlp([hidden_dim + 1 + layout.server_blocks, pair_dim], activation)
        self.critic_embed = _mlp([inp, embed_dim, embed_dim], activation)
        self.critic_pool = _mlp(
            [embed_dim + layout.context_dim, hidden_dim, hidden_dim], activation
        )
        self.per_user = hidden_dim + layout.num_servers * pair_dim
        self.latent_dim_pi = layout.num_users * self.per_user
        self.latent_dim_vf = hidden_dim

    def _embed(self, net: nn.Module, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        users, ctx = self.layout.split(features)
        n = self.layout.num_users
        inp = torch.cat([users, ctx.unsqueeze(1).expand(-1, n, -1)], dim=2)
        return net(inp), ctx

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        """Per-user latents z_n, flattened user-major: (B, N * hidden)."""
        e, ctx = self._embed(self.actor_embed, features)
        pooled = e.mean(dim=1, keepdim=True).expand_as(e)
        z = self.actor_user(torch.cat([e, pooled], dim=2))  # (B, N, hidden)
        if not self.pair_dim:
            return z.flatten(1)
        n, m = self.layout.num_users, self.layout.num_servers
        users, _ = self.layout.split(features)
        ratio = users[..., 1 : 1 + m].unsqueeze(3)  # (B, N, M, 1)
        server = ctx[:, : self.layout.server_blocks * m].reshape(-1, self.layout.server_blocks, m)
        server = server.transpose(1, 2).unsqueeze(1).expand(-1, n, -1, -1)  # (B, N, M, S)
        pair = torch.cat([z.unsqueeze(2).expand(-1, -1, m, -1), ratio, server], dim=3)
        y = self.actor_pair(pair)  # (B, N, M, pair_dim)
        return torch.cat([z, y.flatten(2)], dim=2).flatten(1)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        """The value latent from the users' mean embedding and the context: (B, hidden)."""
        e, ctx = self._embed(self.critic_embed, features)
        return self.critic_pool(torch.cat([e.mean(dim=1), ctx], dim=1))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)


class PerUserHead(nn.Module):
    """Maps shared by all users from each user's latent to its logits, written in the
    ``MultiDiscrete`` order: all users' alpha logits (N x ``num_alpha``), then all users' server
    logits (N x M). Without pair latents one linear map of z_n gives both; with them
    (``pair_dim > 0``) alpha comes from z_n and server m's logit from y_nm."""

    def __init__(
        self,
        num_users: int,
        hidden_dim: int,
        num_alpha: int,
        num_servers: int,
        pair_dim: int = 0,
        alpha_degree: int = 0,
    ) -> None:
        super().__init__()
        self.num_users, self.hidden_dim = num_users, hidden_dim
        self.num_alpha, self.num_servers, self.pair_dim = num_alpha, num_servers, pair_dim
        self.alpha_degree = alpha_degree
        alpha_out = alpha_degree if alpha_degree else num_alpha
        self.linear = nn.Linear(hidden_dim, alpha_out + (0 if pair_dim else num_servers))
        self.alpha_out = alpha_out
        if alpha_degree:  # logit_k = sum_j c_j t_k^j, t_k = k / (A - 1), j = 1..degree
            t = torch.linspace(0.0, 1.0, num_alpha)
            basis = torch.stack([t**j for j in range(1, alpha_degree + 1)])  # (degree, A)
            self.register_buffer("alpha_basis", basis, persistent=False)
        if pair_dim:
            self.pair = nn.Linear(pair_dim, 1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        per_user = latent.reshape(
            -1, self.num_users, self.hidden_dim + self.num_servers * self.pair_dim
        )
        out = self.linear(per_user[..., : self.hidden_dim])  # (B, N, A or degree [+ M])
        alpha = out[..., : self.alpha_out]
        if self.alpha_degree:
            alpha = alpha @ self.alpha_basis  # (B, N, A)
        if self.pair_dim:
            pairs = per_user[..., self.hidden_dim :].reshape(
                -1, self.num_users, self.num_servers, self.pair_dim
            )
            server = self.pair(pairs)[..., 0]  # (B, N, M)
        else:
            server = out[..., self.alpha_out :]
        return torch.cat([alpha.flatten(1), server.flatten(1)], dim=1)


class MECSharedPolicy(ActorCriticPolicy):
    """Actor-critic policy with per-user parameter sharing for the MEC ``discrete`` mode.

    See the module docstring for the network. Takes SB3's ``ActorCriticPolicy`` arguments
    (``net_arch`` is not used) plus:

    Args:
        embed_dim: width of the user embedding phi.
        hidden_dim: width of the per-user latent z_n and of the value MLP.
        pair_dim: width of the per-(user, server) latent y_nm that the server logits come from
            (0: the server logits come from z_n like alpha's).
        alpha_degree: 0: one free logit per alpha; d > 0: the alpha logits are a polynomial of
            degree d in alpha (logit_k = sum_j c_j(z_n) (k / (A - 1))^j): unimodal for d = 2,
            so mass moves along alpha's order (the cost is smooth in alpha).
        activation: ``"relu"`` or ``"tanh"``.

    Raises:
        ValueError: the action space is not ``MultiDiscrete([A] * N + [M] * N)`` or the
            observation is not the ``mec-users`` features of N users and M servers.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Any,
        embed_dim: int = 64,
        hidden_dim: int = 64,
        pair_dim: int = 16,
        alpha_degree: int = 0,
        activation: str = "relu",
        **kwargs: Any,
    ) -> None:
        if (
            not isinstance(action_space, spaces.MultiDiscrete)
            or action_space.nvec.ndim != 1
            or (len(action_space.nvec) % 2)
        ):
            raise ValueError(
                "mec-shared acts in the MEC env's discrete mode "
                f"(MultiDiscrete([Upsilon - 1] * N + [M] * N)), not {action_space}"
            )
        nvec = np.asarray(action_space.nvec)
        n = len(nvec) // 2
        if len(set(nvec[:n].tolist())) != 1 or len(set(nvec[n:].tolist())) != 1:
            raise ValueError(f"mec-shared: {action_space} is not MultiDiscrete([A] * N + [M] * N)")
        self.layout = mec_users_layout(n, int(nvec[n]))
        size = int(np.prod(observation_space.shape or (0,)))
        if size != self.layout.size:
            raise ValueError(
                f"mec-shared needs the mec-users features (obs_transform 'mec-users': "
                f"{self.layout.size} values for {n} users and {nvec[n]} servers), got "
                f"observations of {size}"
            )
        activations = {"relu": nn.ReLU, "tanh": nn.Tanh}
        if activation not in activations:
            raise ValueError(f"activation must be one of {sorted(activations)}, got {activation!r}")
        self.num_alpha = int(nvec[0])
        self.embed_dim, self.hidden_dim, self.pair_dim = (
            int(embed_dim),
            int(hidden_dim),
            int(pair_dim),
        )
        self.alpha_degree = int(alpha_degree)
        self.activation = activation
        kwargs.pop("net_arch", None)
        kwargs.pop("activation_fn", None)
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            activation_fn=activations[activation],
            **kwargs,
        )

    def _build_mlp_extractor(self) -> None:
        # SB3 types mlp_extractor as its MlpExtractor; it takes any module with the same
        # latent_dim_pi / latent_dim_vf and forward_actor / forward_critic
        self.mlp_extractor = MECSharedExtractor(  # type: ignore[assignment]
            self.layout, self.embed_dim, self.hidden_dim, self.activation_fn, self.pair_dim
        )

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        # SB3 built one linear map from the flattened latents to all logits; replace it by the
        # shared per-user head (initialised as SB3 initialises action_net), and rebuild the
        # optimiser over the new parameters.
        self.action_net = PerUserHead(
            self.layout.num_users,
            self.hidden_dim,
            self.num_alpha,
            self.layout.num_servers,
            self.pair_dim,
            self.alpha_degree,
        )
        if self.ortho_init:
            self.action_net.apply(partial(self.init_weights, gain=0.01))
        # torch's stubs type optimizer_class as the base Optimizer, whose __init__ has no lr
        self.optimizer = self.optimizer_class(  # type: ignore[call-arg]
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            embed_dim=self.embed_dim,
            hidden_dim=self.hidden_dim,
            pair_dim=self.pair_dim,
            alpha_degree=self.alpha_degree,
            activation=self.activation,
        )
        data.pop("activation_fn", None)
        data.pop("net_arch", None)
        return data


# ---------------------------------------------------------------------------- FedLoRA
@dataclass(frozen=True)
class FedLoRADevicesLayout:
    """Where the ``fedlora-devices`` transform puts each device's features.

    Features: K device blocks of ``device_dim`` (device-major, in the env's device order, names
    in ``edgeft.agents.transforms.FEDLORA_DEVICE_FEATURES``), then ``global_dim`` global
    features (``FEDLORA_GLOBAL_FEATURES``).
    """

    num_devices: int
    device_dim: int = len(FEDLORA_DEVICE_FEATURES)
    global_dim: int = len(FEDLORA_GLOBAL_FEATURES)
    #: position of the channel-order rank n_k / K within a device block
    rank_index: int = FEDLORA_DEVICE_FEATURES.index("rank")

    @property
    def size(self) -> int:
        """The feature vector's length."""
        return self.num_devices * self.device_dim + self.global_dim

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(devices (B, K, device_dim), global (B, global_dim))`` of features ``x`` (B, size)."""
        cut = self.num_devices * self.device_dim
        return x[:, :cut].reshape(-1, self.num_devices, self.device_dim), x[:, cut:]


def fedlora_devices_layout(num_devices: int) -> FedLoRADevicesLayout:
    """The layout of the ``fedlora-devices`` features for K devices."""
    return FedLoRADevicesLayout(int(num_devices))


def fedlora_action_kind(action_space: spaces.Space) -> tuple[str, int]:
    """``(kind, K)`` of a FedLoRA action space: ``("count", K)`` for Discrete(K + 1),
    ``("subset", K)`` for MultiBinary(K), ``("box", K)`` for a Box of shape (K,) (the
    ``score`` and ``bandwidth`` modes).

    Raises:
        ValueError: any other space.
    """
    if isinstance(action_space, spaces.Discrete) and int(action_space.n) >= 2:
        return "count", int(action_space.n) - 1
    if isinstance(action_space, spaces.MultiBinary) and isinstance(action_space.n, int):
        return "subset", int(action_space.n)
    if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        return "box", int(action_space.shape[0])
    raise ValueError(
        "fedlora-shared acts in the FedLoRA env's count (Discrete(K + 1)), subset "
        "(MultiBinary(K)), score or bandwidth (Box, shape (K,)) modes, not "
        f"{action_space}"
    )


def _check_fedlora_features(observation_space: spaces.Space, layout: FedLoRADevicesLayout) -> None:
    size = int(np.prod(observation_space.shape or (0,)))
    if size != layout.size:
        raise ValueError(
            f"fedlora-shared needs the fedlora-devices features (obs_transform "
            f"'fedlora-devices': {layout.size} values for {layout.num_devices} devices), got "
            f"observations of {size}"
        )


def _activation(name: str) -> type[nn.Module]:
    activations = {"relu": nn.ReLU, "tanh": nn.Tanh}
    if name not in activations:
        raise ValueError(f"activation must be one of {sorted(activations)}, got {name!r}")
    return activations[name]


class DeviceEncoder(nn.Module):
    """Per-device latents z_k = psi([e_k, mean_j e_j, max_j e_j, g]) with e_k = phi([u_k, g])
    (see the module docstring): equivariant to permuting the devices, with ``extra`` inputs per
    device appended to u_k (the critic of the off-policy classes passes the device's action).
    Returns (B, K, hidden_dim)."""

    def __init__(
        self,
        layout: FedLoRADevicesLayout,
        embed_dim: int,
        hidden_dim: int,
        activation: type[nn.Module],
        extra: int = 0,
    ) -> None:
        super().__init__()
        self.layout = layout
        g = layout.global_dim
        self.embed = _mlp([layout.device_dim + extra + g, embed_dim, embed_dim], activation)
        self.device = _mlp([3 * embed_dim + g, hidden_dim, hidden_dim], activation)

    def forward(self, features: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        devices, glob = self.layout.split(features)
        k = self.layout.num_devices
        parts = [devices] if extra is None else [devices, extra]
        e = self.embed(torch.cat([*parts, glob.unsqueeze(1).expand(-1, k, -1)], dim=2))
        ctx = torch.cat([e.mean(dim=1), e.amax(dim=1), glob], dim=1)
        return self.device(torch.cat([e, ctx.unsqueeze(1).expand(-1, k, -1)], dim=2))


class DevicePool(nn.Module):
    """A permutation-invariant latent rho([mean_k e_k, max_k e_k, g]), e_k = phi([u_k, extra_k,
    g]): (B, hidden_dim). The value of the actor-critic policy and the Q of the off-policy
    critics (with the device's action as ``extra``)."""

    def __init__(
        self,
        layout: FedLoRADevicesLayout,
        embed_dim: int,
        hidden_dim: int,
        activation: type[nn.Module],
        extra: int = 0,
    ) -> None:
        super().__init__()
        self.layout = layout
        g = layout.global_dim
        self.embed = _mlp([layout.device_dim + extra + g, embed_dim, embed_dim], activation)
        self.pool = _mlp([2 * embed_dim + g, hidden_dim, hidden_dim], activation)

    def forward(self, features: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        devices, glob = self.layout.split(features)
        k = self.layout.num_devices
        parts = [devices] if extra is None else [devices, extra]
        e = self.embed(torch.cat([*parts, glob.unsqueeze(1).expand(-1, k, -1)], dim=2))
        return self.pool(torch.cat([e.mean(dim=1), e.amax(dim=1), glob], dim=1))


class FedLoRASharedExtractor(nn.Module):
    """SB3's ``mlp_extractor`` of :class:`FedLoRASharedPolicy`: the actor's per-device latents
    [z_k, rank_k] flattened device-major (B, K * (hidden + 1); the rank n_k / K rides along for
    the ``count`` head's channel order) and the critic's pooled latent (B, hidden)."""

    def __init__(
        self,
        layout: FedLoRADevicesLayout,
        embed_dim: int,
        hidden_dim: int,
        activation: type[nn.Module],
    ) -> None:
        super().__init__()
        self.layout = layout
        self.actor = DeviceEncoder(layout, embed_dim, hidden_dim, activation)
        self.critic = DevicePool(layout, embed_dim, hidden_dim, activation)
        self.latent_dim_pi = layout.num_devices * (hidden_dim + 1)
        self.latent_dim_vf = hidden_dim

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        """Per-device latents and ranks, flattened device-major: (B, K * (hidden + 1))."""
        z = self.actor(features)
        rank = self.layout.split(features)[0][
            ..., self.layout.rank_index : self.layout.rank_index + 1
        ]
        return torch.cat([z, rank], dim=2).flatten(1)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        """The value latent pooled over devices: (B, hidden)."""
        return self.critic(features)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)


#: how the ``count`` head turns per-device outputs into the K + 1 logits of n
COUNT_LOGITS = ("stop", "cumsum")


class PerDeviceHead(nn.Module):
    """One linear map shared by all devices, l_k = w z_k + b, laid out for the action space:
    ``subset`` and ``box``: (B, K) in the env's device order; ``count``: the K + 1 logits of n
    (module docstring: ``"stop"`` or ``"cumsum"``), the devices taken in channel order (ascending
    rank, ties in the env's order)."""

    def __init__(
        self, num_devices: int, hidden_dim: int, kind: str, count_logits: str = "stop"
    ) -> None:
        super().__init__()
        self.num_devices, self.hidden_dim = num_devices, hidden_dim
        self.kind, self.count_logits = kind, count_logits
        self.linear = nn.Linear(hidden_dim, 1)
        if kind == "count" and count_logits == "stop":
            self.none = nn.Linear(2 * hidden_dim, 1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        per = latent.reshape(-1, self.num_devices, self.hidden_dim + 1)
        z = per[..., : self.hidden_dim]
        out = self.linear(z)[..., 0]  # (B, K)
        if self.kind != "count":
            return out
        order = torch.argsort(per[..., self.hidden_dim], dim=1, stable=True)
        s = out.gather(1, order)  # strongest first
        if self.count_logits == "cumsum":
            return torch.cat([torch.zeros_like(s[:, :1]), s.cumsum(dim=1)], dim=1)
        none = self.none(torch.cat([z.mean(dim=1), z.amax(dim=1)], dim=1))
        return torch.cat([none, s], dim=1)


class FedLoRASharedPolicy(ActorCriticPolicy):
    """Actor-critic policy with per-device parameter sharing for the FedLoRA env (PPO, A2C).

    See the module docstring for the network and the heads. Takes SB3's ``ActorCriticPolicy``
    arguments (``net_arch`` is not used; ``log_std_init`` sets the one shared log-std of a Box
    action; ``ortho_init`` defaults to False here: with PyTorch's default initialisation PPO
    learned the deep-fade task of ``tests/agents/test_fedlora_shared.py`` in 2048 steps from 6
    of 6 seeds, with SB3's orthogonal one (output gain 0.01) from 3 of 6, 4 of 6 in 4096 steps)
    plus:

    Args:
        embed_dim: width of the device embedding phi.
        hidden_dim: width of the per-device latent z_k and of the value MLP.
        count_logits: ``count`` mode's construction of the K + 1 logits: ``"stop"`` or
            ``"cumsum"`` (module docstring).
        activation: ``"relu"`` or ``"tanh"``.

    Raises:
        ValueError: the action space is not one of the FedLoRA modes', the observation is not
            the ``fedlora-devices`` features of its K devices, or ``use_sde`` is set.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Any,
        embed_dim: int = 64,
        hidden_dim: int = 64,
        count_logits: str = "stop",
        activation: str = "relu",
        **kwargs: Any,
    ) -> None:
        self.kind, k = fedlora_action_kind(action_space)
        self.layout = fedlora_devices_layout(k)
        _check_fedlora_features(observation_space, self.layout)
        if count_logits not in COUNT_LOGITS:
            raise ValueError(
                f"count_logits must be one of {list(COUNT_LOGITS)}, got {count_logits!r}"
            )
        if kwargs.get("use_sde"):
            raise ValueError(
                "fedlora-shared does not support use_sde (gSDE's noise matrix is "
                "sized by K); leave use_sde off"
            )
        self.embed_dim, self.hidden_dim = int(embed_dim), int(hidden_dim)
        self.count_logits = count_logits
        self.activation = activation
        act = _activation(activation)
        kwargs.pop("net_arch", None)
        kwargs.pop("activation_fn", None)
        kwargs.setdefault("ortho_init", False)
        super().__init__(observation_space, action_space, lr_schedule, activation_fn=act, **kwargs)

    def _build_mlp_extractor(self) -> None:
        # SB3 types mlp_extractor as its MlpExtractor; it takes any module with the same
        # latent_dim_pi / latent_dim_vf and forward_actor / forward_critic
        self.mlp_extractor = FedLoRASharedExtractor(  # type: ignore[assignment]
            self.layout, self.embed_dim, self.hidden_dim, self.activation_fn
        )

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        # SB3 built one linear map from the flattened latents to all outputs (and, for a Box,
        # one log-std per device); replace them by the shared per-device head and one shared
        # log-std, and rebuild the optimiser over the new parameters.
        self.action_net = PerDeviceHead(
            self.layout.num_devices, self.hidden_dim, self.kind, self.count_logits
        )
        if self.ortho_init:
            self.action_net.apply(partial(self.init_weights, gain=0.01))
        if self.kind == "box":
            self.log_std = nn.Parameter(torch.full((1,), float(self.log_std_init)))
        # torch's stubs type optimizer_class as the base Optimizer, whose __init__ has no lr
        self.optimizer = self.optimizer_class(  # type: ignore[call-arg]
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            embed_dim=self.embed_dim,
            hidden_dim=self.hidden_dim,
            count_logits=self.count_logits,
            activation=self.activation,
        )
        data.pop("activation_fn", None)
        data.pop("net_arch", None)
        return data


# ---------------------------------------------------------------------------- SAC / TD3
class DeviceQ(nn.Module):
    """Q(s, a) = w' rho([mean_k e_k, max_k e_k, g]) + b', e_k = phi([u_k, a_k, g]): invariant to
    permuting the devices together with their actions (one of the off-policy critics' nets)."""

    def __init__(
        self,
        layout: FedLoRADevicesLayout,
        embed_dim: int,
        hidden_dim: int,
        activation: type[nn.Module],
    ) -> None:
        super().__init__()
        self.pool = DevicePool(layout, embed_dim, hidden_dim, activation, extra=1)
        self.out = nn.Linear(hidden_dim, 1)

    def forward(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.out(self.pool(features, actions.unsqueeze(2)))


class FedLoRASharedCritic(ContinuousCritic):
    """SB3's ``ContinuousCritic`` with :class:`DeviceQ` nets (``qf0``, ``qf1``, ...) in place of
    its flat MLPs (``net_arch`` is not used)."""

    def __init__(
        self, *args: Any, embed_dim: int = 64, hidden_dim: int = 64, **kwargs: Any
    ) -> None:
        kwargs["net_arch"] = []
        super().__init__(*args, **kwargs)
        layout = fedlora_devices_layout(fedlora_action_kind(self.action_space)[1])
        activation = kwargs.get("activation_fn", nn.ReLU)
        self.q_networks = []
        for idx in range(self.n_critics):
            q_net = DeviceQ(layout, embed_dim, hidden_dim, activation)
            self.add_module(f"qf{idx}", q_net)  # replaces SB3's flat net of that name
            self.q_networks.append(q_net)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.set_grad_enabled(not self.share_features_extractor):
            features = self.extract_features(obs, self.features_extractor)
        return tuple(q_net(features, actions) for q_net in self.q_networks)

    def q1_forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.extract_features(obs, self.features_extractor)
        return self.q_networks[0](features, actions)


def _check_off_policy(
    name: str, observation_space: spaces.Space, action_space: spaces.Space, kwargs: dict[str, Any]
) -> FedLoRADevicesLayout:
    kind, k = fedlora_action_kind(action_space)
    if kind != "box":
        raise ValueError(f"{name} acts in a Box mode (score, bandwidth), not {action_space}")
    layout = fedlora_devices_layout(k)
    _check_fedlora_features(observation_space, layout)
    if kwargs.get("use_sde"):
        raise ValueError(f"{name} does not support use_sde; leave use_sde off")
    kwargs.pop("net_arch", None)
    kwargs.pop("activation_fn", None)
    return layout


class FedLoRASACActor(SACActor):
    """SAC's squashed-Gaussian actor with a per-device mean and log-std: shared linear maps
    (``mu``, ``log_std``) of the :class:`DeviceEncoder` latent z_k (``latent_pi``)."""

    # SB3 types these by its gSDE branch (an nn.Sequential latent, a log-std Parameter); here
    # they are the per-device encoder and a Linear map, as SB3's own non-gSDE log_std is
    latent_pi: DeviceEncoder  # type: ignore[assignment]
    log_std: nn.Linear  # type: ignore[assignment]

    def __init__(
        self, *args: Any, embed_dim: int = 64, hidden_dim: int = 64, **kwargs: Any
    ) -> None:
        kwargs["net_arch"] = []
        super().__init__(*args, **kwargs)
        layout = fedlora_devices_layout(fedlora_action_kind(self.action_space)[1])
        self.latent_pi = DeviceEncoder(layout, embed_dim, hidden_dim, self.activation_fn)
        self.mu = nn.Linear(hidden_dim, 1)
        self.log_std = nn.Linear(hidden_dim, 1)

    def get_action_dist_params(
        self, obs: PyTorchObs
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        features = self.extract_features(obs, self.features_extractor)
        z = self.latent_pi(features)  # (B, K, hidden)
        log_std = torch.clamp(self.log_std(z)[..., 0], LOG_STD_MIN, LOG_STD_MAX)
        return self.mu(z)[..., 0], log_std, {}


if TYPE_CHECKING:  # the mixin is only ever combined with SACPolicy or TD3Policy
    _OffPolicyBase = BasePolicy
else:
    _OffPolicyBase = object


class _OffPolicyMixin(_OffPolicyBase):
    """What the SAC and TD3 policies share: the checks, the sizes, the critic, saving."""

    actor_class: type
    #: set by SACPolicy / TD3Policy
    actor_kwargs: dict[str, Any]
    critic_kwargs: dict[str, Any]

    def _setup(
        self,
        name: str,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        embed_dim: int,
        hidden_dim: int,
        activation: str,
        kwargs: dict[str, Any],
    ) -> type[nn.Module]:
        self.layout = _check_off_policy(name, observation_space, action_space, kwargs)
        self.embed_dim, self.hidden_dim = int(embed_dim), int(hidden_dim)
        self.activation = activation
        return _activation(activation)

    def make_actor(self, features_extractor: Any = None) -> Any:
        kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return self.actor_class(**kwargs, embed_dim=self.embed_dim, hidden_dim=self.hidden_dim).to(
            self.device
        )

    def make_critic(self, features_extractor: Any = None) -> FedLoRASharedCritic:
        kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return FedLoRASharedCritic(
            **kwargs, embed_dim=self.embed_dim, hidden_dim=self.hidden_dim
        ).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            embed_dim=self.embed_dim, hidden_dim=self.hidden_dim, activation=self.activation
        )
        data.pop("activation_fn", None)
        data.pop("net_arch", None)
        return data


class FedLoRASharedSACPolicy(_OffPolicyMixin, SACPolicy):
    """SAC policy for the FedLoRA ``score`` (or ``bandwidth``) mode on ``fedlora-devices``
    features: a per-device actor (:class:`FedLoRASACActor`: a mean and a log-std per device)
    and pooled critics (:class:`DeviceQ`); no parameter depends on K. SAC's policy arguments
    (``net_arch`` is not used) plus ``embed_dim``, ``hidden_dim`` and ``activation`` ("relu"
    or "tanh").

    Raises:
        ValueError: not a Box action of shape (K,), not the ``fedlora-devices`` features of K
            devices, or ``use_sde`` set.
    """

    actor_class = FedLoRASACActor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Any,
        embed_dim: int = 64,
        hidden_dim: int = 64,
        activation: str = "relu",
        **kwargs: Any,
    ) -> None:
        act = self._setup(
            "fedlora-shared (SAC)",
            observation_space,
            action_space,
            embed_dim,
            hidden_dim,
            activation,
            kwargs,
        )
        assert isinstance(action_space, spaces.Box)  # _setup raised otherwise
        super().__init__(
            observation_space, action_space, lr_schedule, net_arch=[], activation_fn=act, **kwargs
        )


class DeviceMean(nn.Module):
    """tanh(w z_k + b) per device, z_k from a :class:`DeviceEncoder`: TD3's action."""

    def __init__(
        self,
        layout: FedLoRADevicesLayout,
        embed_dim: int,
        hidden_dim: int,
        activation: type[nn.Module],
    ) -> None:
        super().__init__()
        self.encoder = DeviceEncoder(layout, embed_dim, hidden_dim, activation)
        self.out = nn.Linear(hidden_dim, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.out(self.encoder(features))[..., 0])


class FedLoRATD3Actor(TD3Actor):
    """TD3's deterministic actor with a per-device output (``mu``: :class:`DeviceMean`)."""

    mu: DeviceMean  # type: ignore[assignment]  # SB3 types it as the nn.Sequential it builds

    def __init__(
        self, *args: Any, embed_dim: int = 64, hidden_dim: int = 64, **kwargs: Any
    ) -> None:
        kwargs["net_arch"] = []
        super().__init__(*args, **kwargs)
        layout = fedlora_devices_layout(fedlora_action_kind(self.action_space)[1])
        self.mu = DeviceMean(layout, embed_dim, hidden_dim, self.activation_fn)


class FedLoRASharedTD3Policy(_OffPolicyMixin, TD3Policy):
    """TD3 policy for the FedLoRA ``score`` (or ``bandwidth``) mode on ``fedlora-devices``
    features: a per-device deterministic actor (:class:`FedLoRATD3Actor`) and pooled critics
    (:class:`DeviceQ`); no parameter depends on K. TD3's policy arguments (``net_arch`` is not
    used) plus ``embed_dim``, ``hidden_dim`` and ``activation`` ("relu" or "tanh").

    Raises:
        ValueError: not a Box action of shape (K,), or not the ``fedlora-devices`` features of
            K devices.
    """

    actor_class = FedLoRATD3Actor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Any,
        embed_dim: int = 64,
        hidden_dim: int = 64,
        activation: str = "relu",
        **kwargs: Any,
    ) -> None:
        act = self._setup(
            "fedlora-shared (TD3)",
            observation_space,
            action_space,
            embed_dim,
            hidden_dim,
            activation,
            kwargs,
        )
        assert isinstance(action_space, spaces.Box)  # _setup raised otherwise
        super().__init__(
            observation_space, action_space, lr_schedule, net_arch=[], activation_fn=act, **kwargs
        )


#: policy names of ``TrainConfig.policy`` -> the class (SB3's own names pass through as strings)
POLICIES: dict[str, type[ActorCriticPolicy]] = {
    "mec-shared": MECSharedPolicy,
    "fedlora-shared": FedLoRASharedPolicy,
}
#: the off-policy classes of the ``POLICIES`` names that have them, by algorithm
OFF_POLICY_POLICIES: dict[str, dict[str, type[BasePolicy]]] = {
    "fedlora-shared": {"sac": FedLoRASharedSACPolicy, "td3": FedLoRASharedTD3Policy}
}
#: the observation transform (``edgeft.agents.transforms``) each ``POLICIES`` name reads
POLICY_TRANSFORMS: dict[str, str] = {"mec-shared": "mec-users", "fedlora-shared": "fedlora-devices"}


def policy_for(name: str, algo: str) -> type[BasePolicy]:
    """The policy class of ``TrainConfig.policy`` ``name`` for the SB3 algorithm ``algo``
    (``ppo``, ``a2c``, ``sac``, ``td3``, ...; the Lagrangian variants are PPO / A2C models).

    Raises:
        ValueError: unknown name, or a name without a class for ``algo``.
    """
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; known: {['MlpPolicy', *sorted(POLICIES)]}")
    from edgeft.agents.lagrangian import base_algo

    base = base_algo(algo)
    if base in ("ppo", "a2c"):
        return POLICIES[name]
    classes = OFF_POLICY_POLICIES.get(name, {})
    if base not in classes:
        raise ValueError(
            f"policy {name!r} has classes for "
            f"{['ppo', 'a2c', *sorted(classes)]}, not {algo}; use --policy "
            "MlpPolicy"
        )
    return classes[base]
