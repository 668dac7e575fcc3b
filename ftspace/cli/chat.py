"""Answer one prompt with a run's adapter (or with it off): `ftspace chat`."""

from __future__ import annotations

import contextlib
import sys

from ftspace import quiet
from ftspace.cli.common import add_run_argument, add_schema_flags, examples, schema_values


def add_commands(sub) -> None:
    from ftspace.config import GenerationSettings

    c = sub.add_parser("chat", help="answer one prompt with a run's adapter (reply on stdout)",
                       **examples('ftspace chat RUN --prompt "What is the capital of Zorblax?"',
                                  'ftspace chat RUN --prompt "Hi" --base   # the base model, adapter off',
                                  'ftspace chat RUN --prompt "Hi" --system "Answer briefly." --temperature 0',
                                  'ftspace chat RUN --prompt "Hi" --gguf   # its GGUF export, through llama.cpp'))
    add_run_argument(c)
    c.add_argument("--prompt", required=True, help="the user message")
    c.add_argument("--system", default="", help="a system prompt")
    c.add_argument("--base", action="store_true", help="answer with the adapter disabled")
    c.add_argument("--gguf", nargs="?", const="", metavar="TYPE",
                   help="answer with the run's GGUF export through llama.cpp (needs llama-cpp-python; TYPE: which "
                        "export, default the one there is)")
    add_schema_flags(c, GenerationSettings)
    c.set_defaults(func=cmd_chat)


def cmd_chat(args) -> int:
    from ftspace import runs
    from ftspace.config import GenerationSettings
    from ftspace.errors import RunError

    settings = GenerationSettings(**schema_values(args, GenerationSettings))  # checked before anything loads
    run = runs.find(args.run)
    if not (run.adapter_dir / "adapter_config.json").exists():
        raise RunError(f"Run {run.id} has no adapter yet (status {run.status()['status']}): wait for it to finish.")
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": args.prompt}]
    if args.gguf is not None:
        from ftspace.chat import GgufChat
        from ftspace.export import find_gguf

        if args.base:
            raise RunError("--base and --gguf: the GGUF export holds the tuned model only; drop one of them.")
        model = GgufChat(find_gguf(run, args.gguf))
        print(f"[ftspace chat] answered by {model.name}", file=sys.stderr)
        print(model.reply(messages, settings))
        return 0
    quiet.preload()  # import-time library chatter goes to the library log, not the terminal
    with contextlib.redirect_stdout(sys.stderr):  # what is left must not mix with the reply
        from ftspace.chat import ChatModel

        model = ChatModel.from_adapter(run.adapter_dir)
        reply = model.reply(messages, settings, base=args.base)
    print(reply)
    return 0
