"""The ``portanet`` command."""

import argparse
import sys

from .backend import describe_backends, get_backend
from .errors import PortanetError


def cmd_info(args):
    """Print every backend: installed or not, version, devices."""
    for row in describe_backends():
        state = f"{row['version']:<10} devices: {', '.join(row['devices']) or '-'}" \
            if row["installed"] else "not installed"
        print(f"{row['backend']:<17} {state}" + (f"   ({row['note']})" if "note" in row else ""))
    try:
        print(f"selected: {get_backend()}")
    except PortanetError as exc:
        print(f"selected: unusable: {exc}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="portanet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="list backends, versions and devices")
    info.set_defaults(run=cmd_info)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except PortanetError as exc:
        print(f"portanet: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
