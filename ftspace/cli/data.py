"""Look at a dataset, or have a teacher model write one: `ftspace data inspect`, `data synth`, `data raft`."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

from ftspace import quiet
from ftspace.cli.common import add_schema_flags, err, examples, schema_values
from ftspace.cli.train import config_from_args
from ftspace.errors import FtspaceError


def add_commands(sub) -> None:
    from ftspace.config import RunConfig

    d = sub.add_parser("data", help="dataset tools: inspect a dataset, write new rows (synth), RAFT rows from "
                       "documents",
                       **examples("ftspace data inspect data.jsonl", "ftspace data inspect tatsu-lab/alpaca --json",
                                  "ftspace data synth --seeds seeds.jsonl --num-pairs 20",
                                  "ftspace data raft docs/ --max-chunks 10",
                                  "ftspace data COMMAND --help   (each one's options and examples)"))
    dsub = d.add_subparsers(dest="data_command", required=True)
    di = dsub.add_parser("inspect", help="detect the format, convert, and report on a dataset",
                         **examples("ftspace data inspect data.jsonl", "ftspace data inspect tatsu-lab/alpaca --json",
                                    "ftspace data inspect table.csv --dataset-format columns --prompt-column q "
                                    "--response-column a"))
    di.add_argument("file", help="a data file, a Hub dataset id or example:NAME (RunConfig's dataset)")
    di.add_argument("--json", action="store_true", help="the whole report as JSON on stdout")
    di.add_argument("--no-tokens", action="store_true", help="skip token statistics")
    add_schema_flags(di, RunConfig, names=INSPECT_FIELDS)
    di.set_defaults(func=cmd_data_inspect)

    from ftspace.data.create.settings import RAFT_FIELDS, SYNTH_FIELDS, CreateSettings

    def creator(mode, help, epilog, names):
        c = dsub.add_parser(mode, help=help, epilog="examples:\n" + epilog + "\n\nThe new file's path is the last line "
                            "on stdout.", formatter_class=argparse.RawDescriptionHelpFormatter)
        c.add_argument("--out", metavar="PATH", help=f"output JSONL (default created/{mode}-TIME.jsonl)")
        c.add_argument("--quiet", action="store_true", help="no progress bar")
        add_schema_flags(c, CreateSettings, names=names)
        c.set_defaults(func=cmd_data_create)
        return c

    ds = creator("synth", "write many question/answer pairs in the style of a few (a teacher model generates, then "
                 "repeats, leaks and unusable rows are dropped)",
                 "  ftspace data synth --seeds seeds.jsonl --num-pairs 20\n"
                 "  ftspace data synth --seeds seeds.csv --teacher openai --teacher-url "
                 "http://127.0.0.1:8080/v1 --teacher-model qwen2.5 --num-pairs 500 --eval-dataset test.jsonl\n"
                 "  ftspace data synth --seeds seeds.jsonl --teacher hf --teacher-model "
                 "Qwen/Qwen2.5-72B-Instruct --judge\n\nThe key of an 'openai' teacher is read from FTSPACE_TEACHER_KEY "
                 "or OPENAI_API_KEY; 'hf' uses HF_TOKEN or your saved login.", SYNTH_FIELDS)
    ds.add_argument("--seeds", required=True, metavar="FILE",
                    help="5-10 example pairs (any format `data inspect` reads)")
    ds.add_argument("--context", nargs="*", metavar="DOC", help="documents whose facts the new pairs may use")
    dr = creator("raft", "turn documents into RAFT rows: a question, the document that answers it among distractors, "
                 "and an answer quoting it",
                 "  ftspace data raft docs/ --max-chunks 10\n  ftspace data raft manual.pdf notes.md "
                 "--teacher openai --teacher-url http://127.0.0.1:8000/v1 --teacher-model llama3 --distractors 4\n\n"
                 "Reads .txt .md .pdf .docx .html.", RAFT_FIELDS)
    dr.add_argument("documents", nargs="+", metavar="DOC", help="document files or folders")


INSPECT_FIELDS = ("dataset_format", "prompt_column", "response_column", "dataset_config", "dataset_split",
                  "model_name", "max_seq_length")


def cmd_data_inspect(args) -> int:
    from ftspace.access import hub_token
    from ftspace.data.inspection import inspect_dataset

    cfg = config_from_args(args, base={"dataset": args.file})  # the options are RunConfig's, checked by it
    options = {name: getattr(cfg, name) for name in INSPECT_FIELDS}
    if args.no_tokens:
        options["model_name"] = None
    if options["model_name"]:
        quiet.preload()
    with contextlib.redirect_stdout(sys.stderr):  # library output must not mix with the report
        found = inspect_dataset(cfg.dataset, token=hub_token(), progress=True, **options)
    from ftspace.data import DataReport

    report = DataReport(**found["report"])
    if args.json:
        out = report.to_dict()
        if out.get("tokens"):
            out["tokens"].pop("lengths", None)
        out["preview"] = found["preview"]
        print(json.dumps(out, indent=1, ensure_ascii=False))
    else:
        print(report.summary())
        if found["tokens_error"]:
            print(f"token statistics unavailable: {found['tokens_error']}")
        print("first example:", json.dumps(found["preview"][0], ensure_ascii=False)[:500])
    return 0


def cmd_data_create(args) -> int:
    """`data synth` / `data raft`: a teacher writes rows; the file's path is the last line on stdout."""
    from ftspace.access import hub_token, teacher_key
    from ftspace.data import DataReport
    from ftspace.data.create import CreateSettings, describe_preview, preview, raft, synth, write_rows
    from ftspace.data.create.teacher import Teacher
    from ftspace.data.inspection import inspect_dataset

    mode = args.data_command
    settings = CreateSettings.from_dict(schema_values(args, CreateSettings))
    teacher = Teacher(settings, key=teacher_key() if settings.teacher == "openai" else None,
                      token=hub_token() if settings.teacher == "hf" else None)
    evaluation = synth.eval_questions(settings.eval_dataset) if settings.eval_dataset else []
    if mode == "synth":
        seeds, columns = synth.read_seeds(args.seeds)
        context = []
        if args.context:
            from ftspace.data.create.documents import document_files, read_document

            context = [read_document(f) for f in document_files(args.context)]
        err(describe_preview(preview(settings, "synth", len(seeds))))
    else:
        chunks, documents = raft.load_chunks(args.documents, settings)
        err(raft.describe_chunks(chunks, documents, settings))
        err(describe_preview(preview(settings, "raft", 0, chunks=raft.chunks_used(len(chunks), settings))))
    quiet.preload()  # the bundled teacher, and the validation report's tokenizer after
    from tqdm import tqdm

    bar = tqdm(total=1, desc="creating", file=sys.stderr, dynamic_ncols=True,
               disable=args.quiet or not sys.stderr.isatty())

    def progress(done, total, what):
        bar.total = total
        bar.set_postfix_str(what[:40])
        bar.update(done - bar.n)

    with contextlib.redirect_stdout(sys.stderr):
        if mode == "synth":
            pairs, report = synth.synthesize(settings, teacher, seeds, context=context, evaluation=evaluation,
                                             progress=progress)
            rows = synth.as_rows(pairs, columns)
        else:
            rows, report = raft.build(settings, teacher, chunks, documents=documents, evaluation=evaluation,
                                      progress=progress)
    bar.close()
    if not rows:
        err(report.summary())
        raise FtspaceError("no rows were kept: see the drops above (a stronger teacher, or other seeds, helps).")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = write_rows(rows, args.out or f"created/{mode}-{stamp}.jsonl", report)
    err(report.summary())
    with contextlib.redirect_stdout(sys.stderr):  # the same validation report as any dataset
        found = inspect_dataset(str(out), token=None)
    err(DataReport(**found["report"]).summary())
    print(out)
    return 0
