"""Look at a dataset before training on it: the one function behind `ftspace data inspect` and the
Dataset tab. It streams (a 1 GB file is read through, one row at a time, never held): the report, the
first rows as converted, and token-length statistics through the model's chat template.

JSON in and out, so ftspace.offload can run it in a helper process on ZeroGPU (whose app process must
not import transformers).
"""

from __future__ import annotations

import functools

PREVIEW_ROWS = 3


def inspect_dataset(source: str, *, dataset_format: str = "auto", prompt_column: str = "", response_column: str = "",
                    dataset_config: str = "", dataset_split: str = "train", model_name: str | None = "default",
                    max_seq_length: int = 1024, limit: int | None = None, token: str | None = None,
                    progress: bool = False, method: str = "sft", text_stride: int = 0) -> dict:
    """{"report": DataReport as a dict (its "tokens" filled in), "preview": first rows, "first": the first
    example as [text, trained] pieces, "tokens_error": why there are no token statistics, if so}.

    model_name None skips tokenizing. `limit` stops after that many rows (the app's quick look); `progress`
    shows a bar on stderr when it is a terminal. Raises DataError for data that cannot be used at all."""
    from ftspace.data.formats import NOTE_PROMPTS
    from ftspace.errors import DataError

    options = dict(dataset_format=dataset_format, prompt_column=prompt_column, response_column=response_column,
                   dataset_config=dataset_config, dataset_split=dataset_split, model_name=model_name,
                   max_seq_length=max_seq_length, limit=limit, token=token, progress=progress, text_stride=text_stride)
    try:
        return _inspect(source, method, **options)
    except DataError as e:  # prompts with answers and no reply to imitate: shown as the GRPO rows they are
        if method != "sft" or NOTE_PROMPTS.split(":")[0] not in str(e):
            raise
        return _inspect(source, "grpo", **options)


def _inspect(source: str, method: str, *, dataset_format, prompt_column, response_column, dataset_config,
             dataset_split, model_name, max_seq_length, limit, token, progress, text_stride) -> dict:
    from ftspace.data import check_usable, open_dataset

    report, stream = open_dataset(source, dataset_format=dataset_format, prompt_column=prompt_column,
                                  response_column=response_column, config=dataset_config, split=dataset_split,
                                  limit=limit, token=token, method=method)
    tokenizer, tokens_error, counter, first = None, None, None, None
    if model_name:
        try:
            tokenizer = tokenizer_for(model_name, token)
        except Exception as e:  # no tokenizer (an offline Hub model): the report still stands
            tokens_error = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    if tokenizer is not None:
        from ftspace.data.formats import as_sft
        from ftspace.data.tokenize import TokenCounter, encode, prompt_text, tokenize_example, trained_pieces

        counter = TokenCounter(max_seq_length)
    preview, windows = [], 0
    for example in _with_progress(stream, progress, report):
        if len(preview) < PREVIEW_ROWS:
            preview.append(example)
        if counter is not None:
            if "text" in example:  # cut into windows, as training will
                pieces = encode(tokenizer, example, max_length=max_seq_length, stride=text_stride)
                windows += len(pieces)
            elif "answer" in example and "prompt" in example:  # a GRPO prompt: the model writes the rest
                ids = tokenizer(prompt_text(tokenizer, example), add_special_tokens=False)["input_ids"]
                pieces = [{"input_ids": ids, "assistant_masks": [0] * len(ids)}]
            else:
                pieces = [tokenize_example(tokenizer, as_sft(example))]  # a preference row: its chosen reply
            for encoded in pieces:
                counter.add(len(encoded["input_ids"]))
            if first is None:
                first = trained_pieces(tokenizer, pieces[0])
    check_usable(report)
    if windows:
        counter.extra = {"windows": windows, "documents": report.documents, "stride": text_stride}
    if tokenizer is not None:
        from ftspace.data.tokenize import settle_reasoning_note

        settle_reasoning_note(report, tokenizer)
    report.tokens = counter.stats() if counter is not None else None
    return {"report": report.to_dict(), "preview": preview, "first": first, "tokens_error": tokens_error}


def tokenizer_for(model_name: str, token: str | None):
    from ftspace.models import resolve_model

    path = resolve_model(model_name, progress=lambda *_: None, token=token, need="tokenizer")  # access checked
    return _tokenizer_at(path)


@functools.lru_cache(maxsize=4)
def _tokenizer_at(path: str):
    """A folder's tokenizer, kept for the next inspection of the same model (a Dataset tab check per keystroke)."""
    from ftspace.models import load_tokenizer

    return load_tokenizer(path, progress=lambda *_: None)


def _with_progress(stream, show: bool, report):
    if not show:
        yield from stream
        return
    import sys

    from tqdm import tqdm

    # disable=None: a bar on a terminal, nothing in a pipe or a log (the one-line errors stay one line)
    with tqdm(stream, desc=f"reading {report.source}", unit=" rows", file=sys.stderr, disable=None,
              mininterval=1.0) as bar:
        yield from bar
