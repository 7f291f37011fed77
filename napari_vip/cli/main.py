"""Entry point of the ``napari-vip`` command."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..core.errors import VipInputError
from .common import add_server_args

#: Modules with ``add_parser(subparsers)``; each sets ``func(args) -> int`` on its parser.
COMMANDS = [
    "napari_vip.cli.gui",
    "napari_vip.cli.selftest",
    "napari_vip.cli.classify",
    "napari_vip.cli.concepts",
    "napari_vip.cli.segment",
    "napari_vip.cli.attention",
    "napari_vip.cli.learn",
    "napari_vip.cli.serve",
    "napari_vip.cli.evaluate",
    "napari_vip.cli.sentences",
    "napari_vip.cli.evaluate_seg",
    "napari_vip.cli.finetune",
]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="napari-vip", description="Visual and text prompting of medical "
                                     "vision-language and segmentation models.")
    parser.add_argument("--version", action="version", version=f"napari-vip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    add_server_args(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except VipInputError as exc:
        sys.stderr.write(f"napari-vip {args.command}: {exc}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
