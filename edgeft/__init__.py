"""edgeft: Gymnasium environments for wireless edge fine-tuning of foundation models.

Importing this package registers the environment ids (``edgeft/FedLoRAScheduling-v0``,
``edgeft/MECOffloading-v0``) with Gymnasium. It imports neither torch nor matplotlib: the
surrogate environments and the analytical baselines stay light; real-mode training imports
torch lazily.
"""

from __future__ import annotations

import edgeft.training  # noqa: F401  (registers the real-mode engines with the envs; no torch)
from edgeft.policy import Policy, list_policies, make_policy, register_policy
from edgeft.registration import register_envs

__version__ = "0.1.0"

register_envs()

__all__ = [
    "Policy",
    "list_policies",
    "make_policy",
    "register_policy",
    "register_envs",
    "__version__",
]
