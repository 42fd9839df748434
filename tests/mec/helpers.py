"""Helpers of the MEC tests: seeded instances drawn like the env's first round."""

from __future__ import annotations

import numpy as np
from edgeft.envs.common import build_config
from edgeft.envs.mec import generator as G
from edgeft.envs.mec.config import PRESETS, MECConfig
from edgeft.envs.mec.types import instance_from_state


def make_instance(seed: int = 0, **overrides):
    """A (config, instance) pair drawn like the env's first round."""
    config = build_config(MECConfig, None, PRESETS, **overrides)
    state = G.sample_initial_state(config, np.random.default_rng(seed))
    return config, instance_from_state(config, state)
