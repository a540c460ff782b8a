"""`memsink-bench leaderboard`: tables from result records."""

from __future__ import annotations

import sys
from pathlib import Path

from .options import results_option


def register(sub) -> None:
    board = sub.add_parser(
        "leaderboard", help="build leaderboard tables from result records",
        description="One table per setting and preset from the records under --results: each method's gap "
                    "closed at several degradation budgets with 95% intervals over seeds and sequences. "
                    "If the results directory holds a protocol.yaml, configurations are chosen on its "
                    "selection seeds and reported on the others.")
    board.add_argument("--setting", default=None, help="only this setting, e.g. ts-canary (default: all)")
    board.add_argument("--preset", default=None, help="only this preset, e.g. cpu (default: all)")
    board.add_argument("--format", default="md", choices=["md", "csv", "latex", "html"],
                       help="md (default), csv, latex or html")
    board.add_argument("--output", type=Path, default=None,
                       help="write here (atomically) instead of stdout, e.g. results/leaderboard.md")
    results_option(board)


def handle(args) -> int:
    from ..leaderboard import leaderboard_frame, load_records, render
    from ..storage import atomic_write_text

    text = render(leaderboard_frame(load_records(args.results), args.setting, args.preset), args.format)
    if args.output:
        atomic_write_text(args.output, text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0
