"""`memsink-bench report`: rebuild every table and figure from stored outputs."""

from __future__ import annotations

import sys
from argparse import RawDescriptionHelpFormatter

from .options import results_option


def register(sub) -> None:
    report = sub.add_parser(
        "report", help="rebuild every table and figure in results/ from stored records and analyses",
        formatter_class=RawDescriptionHelpFormatter,
        epilog="example:\n  memsink-bench report --results results\n"
               "writes leaderboard.{md,csv,tex,html}, figures/, analysis tables and index.html; computes nothing")
    results_option(report)


def handle(args) -> int:
    from ..report import build_report

    written = build_report(args.results)
    print(f"wrote {len(written)} files under {args.results}; open {args.results / 'index.html'}", file=sys.stderr)
    return 0
