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
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
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
        return (self.num_users * self.user_dim + self.server_blocks * self.num_servers
                + self.global_dim)

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

    def __init__(self, layout: MECUsersLayout, embed_dim: int, hidden_dim: int,
                 activation: type[nn.Module], pair_dim: int = 0) -> None:
        super().__init__()
        self.layout = layout
        self.hidden_dim, self.pair_dim = hidden_dim, pair_dim
        inp = layout.user_dim + layout.context_dim
        self.actor_embed = _mlp([inp, embed_dim, embed_dim], activation)
        self.actor_user = _mlp([2 * embed_dim, hidden_dim], activation)
        if pair_dim:
            self.actor_pair = _mlp([hidden_dim + 1 + layout.server_blocks, pair_dim], activation)
        self.critic_embed = _mlp([inp, embed_dim, embed_dim], activation)
        self.critic_pool = _mlp([embed_dim + layout.context_dim, hidden_dim, hidden_dim],
                                activation)
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
        ratio = users[..., 1:1 + m].unsqueeze(3)                       # (B, N, M, 1)
        server = ctx[:, :self.layout.server_blocks * m].reshape(-1, self.layout.server_blocks, m)
        server = server.transpose(1, 2).unsqueeze(1).expand(-1, n, -1, -1)  # (B, N, M, S)
        pair = torch.cat([z.unsqueeze(2).expand(-1, -1, m, -1), ratio, server], dim=3)
        y = self.actor_pair(pair)                                      # (B, N, M, pair_dim)
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

    def __init__(self, num_users: int, hidden_dim: int, num_alpha: int, num_servers: int,
                 pair_dim: int = 0, alpha_degree: int = 0) -> None:
        super().__init__()
        self.num_users, self.hidden_dim = num_users, hidden_dim
        self.num_alpha, self.num_servers, self.pair_dim = num_alpha, num_servers, pair_dim
        self.alpha_degree = alpha_degree
        alpha_out = alpha_degree if alpha_degree else num_alpha
        self.linear = nn.Linear(hidden_dim, alpha_out + (0 if pair_dim else num_servers))
        self.alpha_out = alpha_out
        if alpha_degree:  # logit_k = sum_j c_j t_k^j, t_k = k / (A - 1), j = 1..degree
            t = torch.linspace(0.0, 1.0, num_alpha)
            basis = torch.stack([t ** j for j in range(1, alpha_degree + 1)])  # (degree, A)
            self.register_buffer("alpha_basis", basis, persistent=False)
        if pair_dim:
            self.pair = nn.Linear(pair_dim, 1)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        per_user = latent.reshape(-1, self.num_users,
                                  self.hidden_dim + self.num_servers * self.pair_dim)
        out = self.linear(per_user[..., :self.hidden_dim])  # (B, N, A or degree [+ M])
        alpha = out[..., :self.alpha_out]
        if self.alpha_degree:
            alpha = alpha @ self.alpha_basis                # (B, N, A)
        if self.pair_dim:
            pairs = per_user[..., self.hidden_dim:].reshape(
                -1, self.num_users, self.num_servers, self.pair_dim)
            server = self.pair(pairs)[..., 0]               # (B, N, M)
        else:
            server = out[..., self.alpha_out:]
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

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space,
                 lr_schedule: Any, embed_dim: int = 64, hidden_dim: int = 64,
                 pair_dim: int = 16, alpha_degree: int = 0, activation: str = "relu",
                 **kwargs: Any) -> None:
        if not isinstance(action_space, spaces.MultiDiscrete) or action_space.nvec.ndim != 1 or (
                len(action_space.nvec) % 2):
            raise ValueError("mec-shared acts in the MEC env's discrete mode "
                             f"(MultiDiscrete([Upsilon - 1] * N + [M] * N)), not {action_space}")
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
                f"observations of {size}")
        activations = {"relu": nn.ReLU, "tanh": nn.Tanh}
        if activation not in activations:
            raise ValueError(f"activation must be one of {sorted(activations)}, got {activation!r}")
        self.num_alpha = int(nvec[0])
        self.embed_dim, self.hidden_dim, self.pair_dim = (int(embed_dim), int(hidden_dim),
                                                          int(pair_dim))
        self.alpha_degree = int(alpha_degree)
        self.activation = activation
        kwargs.pop("net_arch", None)
        kwargs.pop("activation_fn", None)
        super().__init__(observation_space, action_space, lr_schedule,
                         activation_fn=activations[activation], **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = MECSharedExtractor(self.layout, self.embed_dim, self.hidden_dim,
                                                self.activation_fn, self.pair_dim)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        # SB3 built one linear map from the flattened latents to all logits; replace it by the
        # shared per-user head (initialised as SB3 initialises action_net), and rebuild the
        # optimiser over the new parameters.
        self.action_net = PerUserHead(self.layout.num_users, self.hidden_dim, self.num_alpha,
                                      self.layout.num_servers, self.pair_dim, self.alpha_degree)
        if self.ortho_init:
            self.action_net.apply(partial(self.init_weights, gain=0.01))
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1),
                                              **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(embed_dim=self.embed_dim, hidden_dim=self.hidden_dim,
                    pair_dim=self.pair_dim, alpha_degree=self.alpha_degree,
                    activation=self.activation)
        data.pop("activation_fn", None)
        data.pop("net_arch", None)
        return data


#: policy names of ``TrainConfig.policy`` -> the class (SB3's own names pass through as strings)
POLICIES: dict[str, type[ActorCriticPolicy]] = {"mec-shared": MECSharedPolicy}
