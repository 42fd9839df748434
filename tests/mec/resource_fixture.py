"""Recorded outputs of the exact resource rule (``resources.fast_resource_rule``).

``tests/mec/data/resource_rule_reference.npz`` holds, for each case below, the instance (every
field of :class:`~edgeft.envs.mec.types.MECInstance`), the inputs (alpha, server, weights,
upload delay, price) and the rule's outputs (power, bandwidth, freq_user, freq_edge), recorded
before the rule's implementation was made faster, so ``test_resource_rule.py`` checks the faster
implementation takes the same decisions to 1e-12 relative.

Re-record (only when the rule is meant to change; say why in the commit)::

    python -m tests.mec.resource_fixture
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

PATH = Path(__file__).parent / "data" / "resource_rule_reference.npz"
OUTPUTS = ("power", "bandwidth", "freq_user", "freq_edge")
#: (name, instance overrides, upload delay, priced): the discrete mode's default scenario, the
#: suites' sizes, a crowded edge, the literal model, no energy weight, and priced rounds
CASES: tuple[tuple[str, dict[str, Any], bool, bool], ...] = (
    ("default", {}, True, False),
    (
        "mec-default",
        {"num_users": 20, "num_servers": 4, "area_m": 150.0, "energy_budget_scale": 0.7},
        True,
        False,
    ),
    ("mec-large", {"num_users": 200, "num_servers": 20}, True, False),
    (
        "crowded",
        {"num_users": 12, "num_servers": 2, "f_edge_max_range_hz": (0.3e9, 0.6e9)},
        True,
        False,
    ),
    ("paper", {"preset": "paper", "num_users": 8, "num_servers": 2}, False, False),
    ("no-energy", {"num_users": 8, "num_servers": 2, "w_energy": 0.0}, True, False),
    ("priced", {"num_users": 20, "num_servers": 4, "area_m": 150.0}, True, True),
    ("priced-large", {"num_users": 50, "num_servers": 10}, True, True),
)
SEEDS = (0, 1, 2)


def inputs(
    name: str, overrides: dict[str, Any], upload_delay: bool, priced: bool, seed: int
) -> tuple[Any, dict[str, Any]]:
    """(instance, inputs of the rule) of a case, drawn like the env's first round."""
    from .helpers import make_instance

    config, inst = make_instance(seed, **overrides)
    rng = np.random.default_rng(1000 + seed)
    alpha = rng.integers(1, config.num_layers, size=config.num_users).astype(np.float64)
    server = rng.integers(0, config.num_servers, size=config.num_users)
    price = (
        rng.uniform(0.0, 3.0, size=config.num_users) / (config.num_users * inst.energy_budget)
        if priced
        else None
    )
    return inst, {
        "alpha": alpha,
        "server": server,
        "weights": tuple(config.weights),
        "upload_delay": upload_delay and config.upload_delay,
        "price": price,
    }


def record(out: Path = PATH) -> None:
    """Run the rule on every case and write the fixture."""
    from edgeft.envs.mec.resources import fast_resource_rule
    from edgeft.envs.mec.types import MECInstance

    arrays: dict[str, np.ndarray] = {}
    meta: list[dict[str, Any]] = []
    for name, overrides, ud, priced in CASES:
        for seed in SEEDS:
            key = f"{name}|{seed}"
            inst, kw = inputs(name, overrides, ud, priced, seed)
            dec = fast_resource_rule(
                inst, kw["alpha"], kw["server"], kw["weights"], kw["upload_delay"], kw["price"]
            )
            scalars = {}
            for f in fields(MECInstance):
                v = getattr(inst, f.name)
                if isinstance(v, np.ndarray):
                    arrays[f"{key}|inst|{f.name}"] = v
                else:
                    scalars[f.name] = v
            arrays[f"{key}|alpha"] = kw["alpha"]
            arrays[f"{key}|server"] = kw["server"]
            if kw["price"] is not None:
                arrays[f"{key}|price"] = kw["price"]
            for o in OUTPUTS:
                arrays[f"{key}|{o}"] = getattr(dec, o)
            meta.append(
                {
                    "key": key,
                    "scalars": scalars,
                    "weights": list(kw["weights"]),
                    "upload_delay": bool(kw["upload_delay"]),
                }
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, meta=np.asarray(json.dumps({"format": 1, "cases": meta})), **arrays)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB, {len(meta)} cases)")


def load(path: Path = PATH) -> list[tuple[Any, dict[str, Any], dict[str, np.ndarray]]]:
    """Every recorded case: (instance, the rule's inputs, the recorded outputs)."""
    from edgeft.envs.mec.types import MECInstance

    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    meta = json.loads(str(data.pop("meta")))
    out = []
    for case in meta["cases"]:
        key = case["key"]
        values = dict(case["scalars"])
        for f in fields(MECInstance):
            if f"{key}|inst|{f.name}" in data:
                values[f.name] = data[f"{key}|inst|{f.name}"]
        inst = MECInstance(**values)
        kw = {
            "alpha": data[f"{key}|alpha"],
            "server": data[f"{key}|server"],
            "weights": tuple(case["weights"]),
            "upload_delay": case["upload_delay"],
            "price": data.get(f"{key}|price"),
            "key": key,
        }
        out.append((inst, kw, {o: data[f"{key}|{o}"] for o in OUTPUTS}))
    return out


if __name__ == "__main__":
    record()
