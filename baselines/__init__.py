from typing import Any

from edgeft.envs.family import family_of, resolve


def reference_policy(name: str, config: Any, **options: Any) -> Any:
    """The reference policy ``name`` of the config's family, built for ``config`` (the env's
    config in force) with ``options`` (``action_mode``, ``seed``, policy options): what
    ``edgeft.make_policy(name, config=config, ...)`` gives, for code below the application
    layer.

    Raises:
        ValueError: the family has no such reference policy (the message lists them).
    """
    family = family_of(config)
    table = resolve(family.policies).REFERENCE_POLICIES if family.policies else {}
    if name not in table:
        raise ValueError(f"unknown {family.name} reference policy {name!r}; known: {sorted(table)}")
    options.setdefault("action_mode", config.action_mode)
    return table[name][0](config, **options)
