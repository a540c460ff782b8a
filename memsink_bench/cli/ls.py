"""`memsink-bench ls`: settings, kinds, checkpoints or methods."""

from __future__ import annotations

import sys

from .options import workdir_option


def register(sub) -> None:
    ls = sub.add_parser("ls", help="list settings, kinds, checkpoints or methods")
    ls.add_argument("what", choices=["settings", "kinds", "checkpoints", "methods"])
    workdir_option(ls)


def handle(args) -> int:
    if args.what == "settings":
        from ..config import available_settings, read_task
        for name in available_settings():
            task = read_task(name)
            print(f"{name:16s} presets: {', '.join(task['presets'])}  -- {task.get('description', '').strip()}")
    elif args.what == "kinds":
        from ..kinds import KINDS
        for name, kind in KINDS.items():
            print(f"{name:16s} {kind.description}")
    elif args.what == "checkpoints":
        from ..checkpoints import list_checkpoints
        rows = list_checkpoints(args.workdir)
        if not rows:
            print(f"no checkpoints under {args.workdir}", file=sys.stderr)
        for row in rows:
            val = f"{row['val_loss']:.3f}" if row["val_loss"] is not None else "-"
            print(f"{row['setting']:14s} {row['preset']:6s} {row['kind']:16s} val {val}  "
                  f"{row['train_seconds']}s  {row['path']}")
    elif args.what == "methods":
        from ..methods.registry import registry
        for entry in registry().describe():
            print(f"{entry['name']:20s} {entry['type']:9s} {entry['source']:30s} {entry['summary']}")
            for problem in entry.get("problems", []):
                print(f"  ! {problem}")
    return 0
