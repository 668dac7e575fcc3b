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
                                   "ftspace push RUN --repo my-org/my-adapter --merged",
                                   "ftspace push RUN --repo my-adapter --gguf q8_0"))
    add_run_argument(pu)
    pu.add_argument("--repo", required=True, help="repo name, or owner/name")
    pu.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its "
                    "visibility)")
    pu.add_argument("--merged", action="store_true", help="also push base+adapter merged to 16-bit, as REPO-merged")
    pu.add_argument("--gguf", metavar="TYPE", help="also push a GGUF export of this type (f16, bf16, q8_0; checked "
                    "against the run first), as REPO-GGUF, with its Modelfile")
    pu.set_defaults(func=cmd_push)


def cmd_push(args) -> int:
    from ftspace import access, hub, runs

    run = runs.find(args.run)
    token = access.hub_token()  # HF_TOKEN or the saved `hf auth login` token; never a command-line flag
    if args.gguf:
        from ftspace import export

        export.check(run, args.gguf, token)  # a wrong type or a missing quantizer: before anything is pushed
    quiet.preload()
    with contextlib.redirect_stdout(sys.stderr):
        url = hub.push(run, args.repo, token, private=args.private, merged=args.merged, gguf=args.gguf)
    print(url)
    if args.gguf:
        print(f"{url}-GGUF")
    return 0
