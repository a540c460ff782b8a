"""`memsink-bench leaderboard`: tables from result records."""

from __future__ import annotations

import sys
from pathlib import Path

from .options import results_option


def register(sub) -> None:
    board = sub.add_parser("leaderboard", help="build leaderboard tables from result records")
    board.add_argument("--setting", default=None)
    board.add_argument("--preset", default=None)
    board.add_argument("--format", default="md", choices=["md", "csv", "latex", "html"])
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
