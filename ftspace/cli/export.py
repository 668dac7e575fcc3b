"""Export a run to run anywhere: `ftspace export RUN --gguf q8_0 --ollama` (llama.cpp, Ollama, LM Studio), or
`--merged` (one 16-bit transformers checkpoint)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from ftspace import quiet
from ftspace.cli.common import add_run_argument, examples


def add_commands(sub) -> None:
    from ftspace.export import K_QUANTS, QUANTS

    ex = sub.add_parser("export", help="export a run as GGUF (llama.cpp, Ollama, LM Studio), checked against the "
                        "run, or as a merged 16-bit model",
                        **examples("ftspace export RUN --gguf q8_0 --ollama",
                                   "ftspace export RUN --gguf f16 --out ~/models/mine",
                                   "ftspace export RUN --merged"))
    add_run_argument(ex)
    what = ex.add_mutually_exclusive_group(required=True)
    what.add_argument("--gguf", metavar="TYPE", help=f"GGUF type: {', '.join(QUANTS)}; {', '.join(K_QUANTS)} "
                      "need llama.cpp's quantizer (llama-cpp-python or llama-quantize)")
    what.add_argument("--merged", action="store_true", help="base + adapter merged into one 16-bit checkpoint")
    ex.add_argument("--ollama", action="store_true", help="also write an Ollama Modelfile (with --gguf)")
    ex.add_argument("--out", metavar="DIR", help="the folder to write (default: the run's exports/TYPE)")
    ex.add_argument("--quiet", action="store_true", help="no progress bar")
    ex.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from tqdm import tqdm

    from ftspace import export, runs
    from ftspace.access import hub_token
    from ftspace.cli.common import err

    run = runs.find(args.run)
    token = hub_token()  # a base model named by Hub id is fetched with your own token
    out = Path(args.out).expanduser() if args.out else None
    if args.merged:
        if args.ollama:
            err("--ollama goes with --gguf (Ollama runs GGUF files): add --gguf q8_0, for example.")
            return 2
        from ftspace.hub import merge

        quiet.preload()
        out = out or run.path / "exports" / "merged"
        with contextlib.redirect_stdout(sys.stderr):
            merge(run, out, token)
        print(out)
        return 0
    export.check(run, args.gguf, token)  # a wrong type, a missing adapter or quantizer: before any loading
    quiet.preload()
    bar = None if args.quiet else tqdm(total=1, desc="exporting", file=sys.stderr, dynamic_ncols=True,
                                       bar_format="{desc}: {n}/{total} {bar} {postfix}")

    def progress(done, total, what):
        if bar is not None:
            bar.total, bar.n = total, done
            bar.set_postfix_str(what)
            bar.refresh()

    try:
        with contextlib.redirect_stdout(sys.stderr):
            report = export.gguf(run, args.gguf, ollama=args.ollama, out_dir=out, token=token, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    for line in export.parity_lines(report["parity"], report.get("ollama")):
        print(line)
    print(report["folder"])
    return 0
