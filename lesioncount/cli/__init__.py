"""The ``lesioncount`` console script: one subcommand per public function, each a thin wrapper.

Subcommands register through ``SUBCOMMANDS`` (name -> ``module:add_cli``); each ``add_cli(subparsers)``
adds its parser and sets ``func`` to a function taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

#: name -> "module:function" that adds the subcommand's parser. Order is the order in --help.
SUBCOMMANDS: dict[str, str] = {
    "count": "lesioncount.cli.core:add_count",
    "demo": "lesioncount.demo:add_cli",
    "train": "lesioncount.cli.core:add_train",
    "calibrate": "lesioncount.cli.core:add_calibrate",
    "train-experts": "lesioncount.cli.core:add_train_experts",
    "ensemble": "lesioncount.cli.core:add_ensemble",
    "export": "lesioncount.cli.core:add_export",
    "evaluate": "lesioncount.cli.evaluate:add_cli",
    "score": "lesioncount.cli.score:add_cli",
    "compare": "lesioncount.cli.compare:add_cli",
    "serve": "lesioncount.cli.serve:add_cli",  # also adds create-admin
}


#: The extra (pyproject optional dependencies) each optional subcommand needs.
EXTRAS: dict[str, str] = {
    "train": "train",
    "calibrate": "train",
    "train-experts": "train",
    "ensemble": "train",
    "export": "train",
    "evaluate": "eval",
    "score": "batch",
    "compare": "compare",
    "serve": "web",
}


def build_parser() -> argparse.ArgumentParser:
    from lesioncount import __version__

    parser = argparse.ArgumentParser(
        prog="lesioncount",
        description="Find, classify and count acne lesions and scars in facial photos.",
    )
    parser.add_argument("--version", action="version", version=f"lesioncount {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, target in SUBCOMMANDS.items():
        module, func = target.split(":")
        try:
            add = getattr(importlib.import_module(module), func)
        except ModuleNotFoundError as e:
            # A core install has no extras: the subcommand stays listed and says what to install.
            _add_missing(sub, name, e.name or str(e))
            continue
        add(sub)
    return parser


def _add_missing(sub: argparse._SubParsersAction, name: str, missing: str) -> None:
    extra = EXTRAS.get(name, "all")
    p = sub.add_parser(name, help=f"(needs the `{extra}` extra)", add_help=False)

    def run(_: argparse.Namespace) -> int:
        print(
            f"lesioncount {name} needs {missing!r}, which is not installed: pip install 'lesioncount[{extra}]'",
            file=sys.stderr,
        )
        return 2

    p.set_defaults(func=run, missing_extra=True)  # its arguments are not known: main lets them pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "missing_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    previous = _sigterm_interrupts()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted: results written so far are kept", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _sigterm_interrupts() -> Any:
    """Let SIGTERM (``kill``, ``timeout``, a cluster's job limit) stop a command as Ctrl-C does: cleanly, with a word.

    Returns the handler it replaced, or None where none could be set (not the main thread).
    """

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:
        return None


if __name__ == "__main__":
    sys.exit(main())
