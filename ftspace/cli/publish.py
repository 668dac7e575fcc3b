"""Push a run's adapter and its card to the Hub: `ftspace push`."""

from __future__ import annotations

import contextlib
import sys

from ftspace import quiet
from ftspace.cli.common import add_run_argument, examples


def add_commands(sub) -> None:
    pu = sub.add_parser("push", help="push a run's adapter and model card to the Hub (token: HF_TOKEN or "
                        "hf auth login)",
                        **examples("ftspace push RUN --repo my-adapter --private",
                                   "ftspace push RUN --repo my-org/my-adapter --merged"))
    add_run_argument(pu)
    pu.add_argument("--repo", required=True, help="repo name, or owner/name")
    pu.add_argument("--private", action="store_true")
    pu.add_argument("--merged", action="store_true", help="also push base+adapter merged to 16-bit, as REPO-merged")
    pu.set_defaults(func=cmd_push)


def cmd_push(args) -> int:
    from ftspace import access, hub, runs

    run = runs.find(args.run)
    token = access.hub_token()  # HF_TOKEN or the saved `hf auth login` token; never a command-line flag
    quiet.preload()
    with contextlib.redirect_stdout(sys.stderr):
        url = hub.push(run, args.repo, token, private=args.private, merged=args.merged)
    print(url)
    return 0
