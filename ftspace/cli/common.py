"""What every command shares: the exit codes, one-line errors, and flags generated from the schemas (RunConfig,
GenerationSettings, CreateSettings): one definition of every option."""

from __future__ import annotations

import argparse
import sys


EXIT_CODES = """exit codes:
  0    done (a run: completed)
  1    the run ended failed, stopped or interrupted (its error is on stderr, its folder on stdout)
  2    bad input or a problem you can fix: one line on stderr says what and where
  130  cancelled with Ctrl-C (a run stops after the current step; `ftspace resume RUN` goes on)"""


def err(message: str, file=None):
    print(message, file=file or sys.stderr, flush=True)


ALIASES = {"model_name": ["--model"], "dataset_format": ["--format"], "train_on": ["--on"],
           "jobs_flavor": ["--flavor"]}


def add_schema_flags(parser, schema, names=None, given_only=True):
    """One `--field-name` flag per field of `schema` (or of `names`), with its help, default and choices.
    given_only: absent flags stay out of the namespace, so a YAML file's values stand unless a flag is given."""
    from dataclasses import fields

    from ftspace.schema import default_of, field_type

    groups = {}
    for f in fields(schema):
        if names is not None and f.name not in names:
            continue
        meta, kind, default = f.metadata, field_type(f, schema), default_of(f)
        group = groups.get(meta["group"]) or groups.setdefault(
            meta["group"], parser.add_argument_group(f"{meta['group']} options"))
        shown = ",".join(default) if isinstance(default, list) else default
        shown = "none" if shown in ("", None) else shown
        extra = dict(default=argparse.SUPPRESS) if given_only else dict(default=default)
        if kind is bool:
            extra["action"] = argparse.BooleanOptionalAction
        else:
            extra["metavar"] = {int: "N", float: "X", list: "A,B"}.get(kind, "TEXT")
        if meta.get("choices"):
            extra["metavar"] = "{" + ",".join(meta["choices"]) + "}"  # checked by the schema: one-line errors
        group.add_argument("--" + f.name.replace("_", "-"), *ALIASES.get(f.name, []), dest=f.name,
                           help=f"{meta['help']} (default: {shown})".replace("%", "%%"), **extra)


def schema_values(args, schema) -> dict:
    """The schema's fields that were given as flags, by name (values still as typed: the schema coerces)."""
    from dataclasses import fields

    return {f.name: getattr(args, f.name) for f in fields(schema) if hasattr(args, f.name)}


def examples(*lines: str) -> dict:
    """A subcommand's epilog: its examples, then the exit codes."""
    return dict(epilog="examples:\n" + "".join(f"  {line}\n" for line in lines) + "\n" + EXIT_CODES,
                formatter_class=argparse.RawDescriptionHelpFormatter)


def add_run_argument(parser) -> None:
    """The RUN argument of every command that acts on one run."""
    parser.add_argument("run", help="a run id (`ftspace runs` lists them)")
