"""CreateSettings: the one schema of dataset creation (teacher, synthetic pairs, RAFT).

The CLI's `data synth` / `data raft` flags and the Dataset tab's Create controls are generated from
these fields, as RunConfig's are for training. A teacher's API key is deliberately not a field: a
field is written into the dataset's provenance, and a key must never reach a file.

>>> s = CreateSettings(teacher="openai", teacher_url="http://127.0.0.1:8080/v1", teacher_model="m")
>>> s.num_pairs, s.oracle_absent
(50, 0.2)
>>> CreateSettings(oracle_absent=1.5)
Traceback (most recent call last):
...
ftspace.errors.ConfigError: oracle_absent = 1.5 is out of range: use a number from 0 to 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ftspace.schema import coerce_fields, option
from ftspace.errors import ConfigError

TEACHERS = ["default", "openai", "hf"]
TEACHER_FIELDS = ["teacher", "teacher_model", "teacher_url", "temperature", "max_tokens", "timeout", "retries",
                  "concurrency"]
FILTER_FIELDS = ["min_chars", "max_chars", "similarity", "eval_dataset", "seed"]
SYNTH_FIELDS = TEACHER_FIELDS + ["num_pairs", "task", "pairs_per_request", "judge"] + FILTER_FIELDS
RAFT_FIELDS = TEACHER_FIELDS + ["chunk_tokens", "chunk_overlap", "questions_per_chunk", "distractors",
                                "oracle_absent", "max_chunks"] + FILTER_FIELDS


@dataclass
class CreateSettings:
    # --- teacher: who writes the rows
    teacher: str = option(
        "default", "Teacher model: 'default' is the bundled SmolLM2-135M (offline; shows the pipeline working, "
        "its rows are poor), 'openai' any OpenAI-compatible server (llama.cpp, vLLM, Ollama, OpenAI), 'hf' Hugging "
        "Face Inference Providers with your own token.", group="teacher", label="Teacher", choices=TEACHERS)
    teacher_model: str = option(
        "", "Model the teacher endpoint serves: for 'hf' a Hub id such as Qwen/Qwen2.5-72B-Instruct (optionally "
        ":provider), for 'openai' the server's model name.", group="teacher", label="Teacher model")
    teacher_url: str = option(
        "", "With teacher 'openai': the server's base URL, e.g. http://127.0.0.1:8080/v1 (the key comes from "
        "FTSPACE_TEACHER_KEY or OPENAI_API_KEY, or the app's key box; it is never saved).", group="teacher",
        label="Teacher URL")
    temperature: float = option(0.8, "Teacher sampling temperature: higher gives more varied rows (0.7-1.0).",
                                group="teacher", label="Temperature", low=0.0, high=2.0)
    max_tokens: int = option(768, "Longest teacher reply, in tokens.", group="teacher", label="Max reply tokens",
                             low=16, high=16384)
    timeout: float = option(120.0, "Seconds one teacher request may take before it is retried.",
                            group="teacher", label="Timeout (s)", low=1.0, high=3600.0)
    retries: int = option(3, "Retries of a request answered 429 or 5xx (or timed out), waiting 1, 2, 4 ... s "
                          "(or the server's Retry-After).", group="teacher", label="Retries", low=0, high=10)
    concurrency: int = option(4, "Teacher requests in flight at once (the bundled teacher answers 4 at a time, as one batch).",
                              group="teacher", label="Requests at once", low=1, high=64)

    # --- from a few examples
    num_pairs: int = option(50, "New question/answer pairs to keep (after filtering).", group="synth",
                            label="Pairs to keep",
                            low=1, high=100000)
    task: str = option("", "What the pairs are for, in a sentence (optional; steers the teacher).", group="synth",
                       label="Task")
    pairs_per_request: int = option(5, "Pairs the teacher writes per request.", group="synth",
                                    label="Pairs per request", low=1, high=50)
    judge: bool = option(False, "Ask the teacher whether each answer answers its question, and drop those it "
                         "says do not (one more request per pair).", group="synth", label="Judge the answers")

    # --- from documents (RAFT)
    chunk_tokens: int = option(256, "Document chunk size, in tokens (each row carries 1 + distractors chunks).",
                               group="raft", label="Chunk size (tokens)", low=16, high=8192)
    chunk_overlap: int = option(32, "Tokens a chunk repeats from the end of the one before.", group="raft",
                                label="Chunk overlap (tokens)", low=0)
    questions_per_chunk: int = option(2, "Questions the teacher writes about each chunk.", group="raft",
                                      label="Questions per chunk",
                                      low=1, high=20)
    distractors: int = option(3, "Chunks that do not answer the question, added to each row's documents "
                              "(from other documents where there are any).", group="raft",
                                  label="Distractor documents", low=0, high=20)
    oracle_absent: float = option(0.2, "Share of rows whose documents leave out the one that answers (RAFT's "
                                  "1 - P), so the model also learns to answer when the context does not help.",
                                  group="raft", label="Rows without the answer document", low=0.0, high=1.0)
    max_chunks: int = option(0, "Use at most this many chunks, spread over the documents (0: all).",
                             group="raft", label="Chunks used at most", low=0)

    # --- filters, both modes
    min_chars: int = option(2, "Drop a question or answer shorter than this, in characters.", group="filters",
                            label="Shortest text", low=0)
    max_chars: int = option(4000, "Drop a question or answer longer than this, in characters.", group="filters",
                            label="Longest text",
                            low=1)
    similarity: float = option(0.8, "Near-duplicate threshold: word-pair overlap (0-1) of two questions above which "
                               "the later one is a repeat (of another row, a seed or an evaluation row).",
                               group="filters", label="Near-duplicate threshold", low=0.05, high=1.0)
    eval_dataset: str = option("", "Evaluation rows to keep out of the new data (a data file): a generated "
                               "question that repeats one of them is dropped.", group="filters",
                                   label="Evaluation rows to avoid")
    seed: int = option(0, "Random seed (seed sampling, distractor choice, which rows leave the oracle out).",
                       group="filters", label="Random seed")

    def __post_init__(self):
        coerce_fields(self)
        if self.chunk_overlap >= self.chunk_tokens:
            raise ConfigError(f"chunk_overlap = {self.chunk_overlap} must be smaller than chunk_tokens = "
                              f"{self.chunk_tokens}: lower the overlap.")
        if self.min_chars >= self.max_chars:
            raise ConfigError(f"min_chars = {self.min_chars} must be below max_chars = {self.max_chars}.")

    def to_dict(self, names=None) -> dict:
        values = asdict(self)
        return {k: values[k] for k in (names or values)}

    @classmethod
    def from_dict(cls, values: dict) -> "CreateSettings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{unknown[0]} is not a dataset creation setting.")
        return cls(**values)
