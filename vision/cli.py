"""The ``wildscan`` command line: one entry point, subcommands from each package.

Subcommands are registered under the ``wildscan.commands`` entry-point group in
``pyproject.toml`` by the package that owns them (``vision`` for ``classify``,
``training`` for ``train``/``evaluate``/``export``/``data``, ``serving`` for ``serve``/
``scan``), so this module never imports ``training`` or ``serving`` by name. Each
registration function only adds an argparse sub-parser; heavy imports happen inside the
command after parsing, so ``wildscan --help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

from . import __version__
from .errors import WildscanError

GROUP = "wildscan.commands"
_ORDER = (
    "classify",
    "scan",
    "report",
    "serve",
    "keys",
    "feedback",
    "gallery",
    "train",
    "evaluate",
    "export",
    "data",
    "models",
)


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="wildscan",
        description="Find protected wildlife products in marketplace photos.",
    )
    parser.add_argument("--version", action="version", version=f"wildscan {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    eps = sorted(entry_points(group=GROUP), key=lambda ep: (_rank(ep.name), ep.name))
    for ep in eps:
        try:
            register = ep.load()
        except ImportError as e:  # an extra that is not installed: say so when it is used
            _unavailable(sub, ep.name, e)
            continue
        register(sub)
    return parser


def _unavailable(sub, name: str, error: ImportError) -> None:
    p = sub.add_parser(name, help=f"(unavailable: {error})", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)

    def fail(_args) -> int:
        print(f"wildscan {name} is unavailable in this installation: {error}", file=sys.stderr)
        return 1

    p.set_defaults(func=fail)


def _rank(name: str) -> int:
    return _ORDER.index(name) if name in _ORDER else len(_ORDER)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand, return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except WildscanError as e:
        print(f"wildscan {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
