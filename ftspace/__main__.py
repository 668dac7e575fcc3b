"""The command line: `ftspace COMMAND` (installed by `make setup`) or `python -m ftspace COMMAND`, over the same
functions the app calls. The commands live in ftspace/cli/, one module per step of the journey.

Exit codes (EXIT_CODES, also in `ftspace --help`): 0 done; 1 a run that ended failed, stopped or interrupted;
2 an error the user can fix (FtspaceError: one line on stderr); 130 cancelled with Ctrl-C. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from ftspace.cli import app, chat, data, demo, evaluate, export, publish, train
from ftspace.cli.common import EXIT_CODES, err
from ftspace.errors import FtspaceError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ftspace", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fine-tune LLMs with Unsloth LoRA, from the command line (the app: `ftspace app`).\n"
                    "Runs go to ./runs of the folder you are in, or $FTSPACE_RUNS. `python -m ftspace` works too.",
        epilog="examples:\n  ftspace demo\n  ftspace data inspect data.jsonl\n"
               "  ftspace train --dataset data.jsonl --max-steps 60\n  ftspace runs --json\n"
               "  ftspace status RUN --json\n  ftspace chat RUN --prompt \"Hello\"\n"
               "  ftspace push RUN --repo my-adapter\n  ftspace export RUN --gguf q8_0 --ollama\n  ftspace app\n\n"
               "Each command's own help: ftspace COMMAND --help\n\n"
               + EXIT_CODES)
    sub = p.add_subparsers(dest="command", required=True)

    for step in (train, chat, publish, export, data, evaluate, demo, app):  # the order of `ftspace --help`
        step.add_commands(sub)
    return p


def entry():
    """The installed `ftspace` command (pyproject.toml's entry point)."""
    sys.exit(main())


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FtspaceError as e:
        err(f"error: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
