"""The process of one sweep job: `python -m memsink_bench.sweep.job [tracking options] -- ARGV`.

It runs `memsink-bench ARGV` through the CLI's own entry point (same errors, same exit codes),
then, for a method run with a tracker, sends the record's tradeoff points to it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memsink_bench.sweep.job")
    parser.add_argument("--log-with", default="none", help="tracker of a method run's record")
    parser.add_argument("--record", type=Path, default=None)
    parser.add_argument("--tracking-dir", type=Path, default=None)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the memsink-bench arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command

    from ..cli import main as cli_main
    from ..errors import UserError

    code = cli_main(command)
    if code == 0 and args.log_with != "none" and args.record is not None:
        from ..tracking import log_record
        try:
            log_record(args.record, args.log_with, args.tracking_dir)
        except UserError as error:
            print(f"memsink-bench: error: {error}", file=sys.stderr)
            return error.exit_code
    return code


if __name__ == "__main__":
    sys.exit(main())
