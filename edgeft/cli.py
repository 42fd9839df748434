"""The ``edgeft`` command line: one subcommand per job.

Each subcommand lives in its own module with ``add_arguments(parser)`` and ``run(args) -> int``;
a module that is not installed (an optional part) simply does not appear in ``--help``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "compare": ("edgeft.compare", "compare reference policies on a scenario and print a table"),
    "calibrate": ("edgeft.training.calibrate", "fit the FedLoRA surrogate to real split-LoRA runs"),
    "train": ("edgeft.train", "train a stable-baselines3 agent on an edgeft env"),
    "leaderboard": ("edgeft.leaderboard", "evaluate policies on a named, versioned suite"),
    "figures": ("edgeft.figures", "reproduce the papers' figures as PNG files"),
    "export": ("edgeft.export", "turn a stable-baselines3 model zip into a safe edgeft agent"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeft",
        description="Wireless edge fine-tuning environments and the papers' reference policies.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name is not None and module.startswith(err.name):
                continue  # that part of the suite is not built / installed
            raise
        p = sub.add_parser(
            name,
            help=help_text,
            description=(mod.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
