"""RAFT rows from documents (Retrieval-Augmented Fine-Tuning, Zhang et al. 2024).

Each row: the documents (the chunk that answers - the "oracle" - and `distractors` chunks that do not,
shuffled), a question, and an answer that reasons quoting the oracle verbatim between ##begin_quote##
and ##end_quote## and ends with "<ANSWER>: ...". In a share of rows (`oracle_absent`, default 20 %) the
oracle is left out and the answer kept, as the paper does, so the model also learns to answer when the
retrieved context does not hold the answer (from what it learnt) instead of trusting whatever is there.

A quote that is not verbatim in the oracle is replaced by the oracle's sentence it matches (a
teacher often changes a word or the spacing); one that matches no sentence drops the row. A reply with
no quote and no final-answer line (small teachers ignore the format) gets the oracle sentence it shares
most words with as its quote, and becomes the final answer; the report counts those.
"""

from __future__ import annotations

import random
import re

from ftspace.data.create import CreateReport
from ftspace.data.create import filters as F
from ftspace.data.create.documents import Chunk, chunk, document_files, read_document, token_encoder
from ftspace.data.create.settings import RAFT_FIELDS, CreateSettings
from ftspace.data.create.teacher import Teacher
from ftspace.errors import DataError

BEGIN, END, FINAL = "##begin_quote##", "##end_quote##", "<ANSWER>:"
QUOTE = re.compile(re.escape(BEGIN) + r"(.*?)" + re.escape(END), re.S)
ROW_SYSTEM = (f"Answer the question from the documents. Quote the sentences that hold the answer, copied exactly, "
              f"between {BEGIN} and {END}, reason step by step, then give the final answer after {FINAL}")
MIN_QUOTE_MATCH = 0.5  # word-pair overlap needed to put the oracle's own sentence in place of a loose quote
MIN_SHARED_WORDS = 0.4  # share of a sentence's words a quote-less reply must use for it to become the quote


def load_chunks(paths, settings: CreateSettings, offsets=None) -> tuple[list[Chunk], int]:
    """All chunks of the documents, and how many documents there were."""
    files = document_files(paths)
    offsets = offsets or token_encoder()
    chunks = []
    for f in files:
        chunks += chunk(f.name, read_document(f), settings.chunk_tokens, settings.chunk_overlap, offsets)
    return chunks, len(files)


def chunks_used(n: int, settings: CreateSettings) -> int:
    """How many of n chunks a run asks about (`max_chunks`, 0: all)."""
    return min(n, settings.max_chunks or n)


def describe_chunks(chunks: list[Chunk], documents: int, settings: CreateSettings) -> str:
    return (f"{documents} documents, {len(chunks)} chunks of at most {settings.chunk_tokens} tokens "
            f"({chunks_used(len(chunks), settings)} used)")


def question_prompt(c: Chunk, k: int) -> list[dict]:
    # No system turn: small teachers follow a plain "quiz questions" request best (measured with the bundled one)
    return [{"role": "user", "content": f"A passage from {c.document}:\n<passage>\n{c.text}\n</passage>\n\n"
             f"Write {k} different quiz questions about this passage, each answered by it and clear without it "
             "(name what it is about). Reply with a JSON list of strings, e.g. [\"Where is X?\", \"When did Y "
             "happen?\"]"}]


def answer_prompt(c: Chunk, question: str) -> list[dict]:
    return [{"role": "system", "content": "You answer questions from a passage, quoting it exactly."},
            {"role": "user", "content": f"<passage>\n{c.text}\n</passage>\n\nQuestion: {question}\n\n"
             f"Reason step by step. Quote the sentences of the passage that hold the answer, copied exactly, each "
             f"between {BEGIN} and {END}. End with one line: {FINAL} the short final answer."}]


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def settle_answer(reply: str, oracle: str) -> tuple[str, int, bool]:
    """The teacher's answer with every quote verbatim in the oracle; how many quotes were corrected; and
    whether the quote was picked here (a reply with no quote and no final-answer line, as small teachers
    write: the oracle sentence sharing most of its words becomes the quote, the reply the final answer).
    Raises RowError for a refusal, a quote found nowhere in the oracle, or no final answer.

    >>> settle_answer("##begin_quote##Paris is  the capital.##end_quote## So Paris.\\n<ANSWER>: Paris",
    ...               "France is in Europe. Paris is the capital. It is large.")
    ('##begin_quote##Paris is the capital.##end_quote## So Paris.\\n<ANSWER>: Paris', 1, False)
    >>> settle_answer("Its capital is Paris, a large city.", "France is in Europe. Paris is the capital.")[0]
    '##begin_quote##Paris is the capital.##end_quote##\\n<ANSWER>: Its capital is Paris, a large city.'
    """
    data = None
    if BEGIN not in reply:  # the same as JSON: {"quote": ..., "reasoning": ..., "answer": ...}
        try:
            data = F.load_json(reply)
        except ValueError:
            pass
    if isinstance(data, dict) and isinstance(data.get("quote"), str) and isinstance(data.get("answer"), str):
        reply = (f"{BEGIN}{data['quote'].strip()}{END} {str(data.get('reasoning') or '').strip()}\n"
                 f"{FINAL} {data['answer'].strip()}")
    if F.refusal(reply) or not reply.strip():
        raise F.RowError("answer", "the teacher refused" if reply.strip() else "empty reply")
    quotes = QUOTE.findall(reply)
    if not quotes and FINAL not in reply:
        best = max(sentences(oracle), key=lambda s: _shared_words(s, reply), default="")
        if _shared_words(best, reply) < MIN_SHARED_WORDS:
            raise F.RowError("answer", f"no quote of the passage between {BEGIN} and {END}, and no sentence of it "
                                       "in the reply")
        return f"{BEGIN}{best}{END}\n{FINAL} {reply.strip()}", 0, True
    if not quotes:
        raise F.RowError("answer", f"no quote of the passage between {BEGIN} and {END}")
    final = reply.rpartition(FINAL)[2].strip() if FINAL in reply else ""
    if not final:
        raise F.RowError("answer", f"no final answer after {FINAL}")
    corrected = 0
    for q in quotes:
        if q.strip() and q.strip() in oracle:
            continue
        best = max(sentences(oracle), key=lambda s: F.similarity(q, s), default="")
        if not q.strip() or F.similarity(q, best) < MIN_QUOTE_MATCH:
            raise F.RowError("answer", f"quote not in the passage: {q.strip()[:80]!r}")
        reply = reply.replace(f"{BEGIN}{q}{END}", f"{BEGIN}{best}{END}", 1)
        corrected += 1
    return reply.strip(), corrected, False


def _shared_words(sentence: str, reply: str) -> float:
    """The share of a sentence's longer words (4+ letters) that the reply uses too."""
    words = {w for w in F.words(sentence) if len(w) > 3}
    return len(words & set(F.words(reply))) / len(words) if words else 0.0


def distractors_for(oracle_index: int, chunks: list[Chunk], k: int, rng: random.Random) -> list[int]:
    """k chunk indexes, never the oracle: from other documents first, then the oracle's own document away
    from the oracle (its neighbours share the overlap)."""
    doc = chunks[oracle_index].document
    others = [i for i, c in enumerate(chunks) if c.document != doc]
    own = [i for i, c in enumerate(chunks) if c.document == doc and abs(i - oracle_index) > 1]
    picked = rng.sample(others, min(k, len(others)))
    if len(picked) < k:
        picked += rng.sample(own, min(k - len(picked), len(own)))
    return picked


def build(settings: CreateSettings, teacher: Teacher, chunks: list[Chunk], *, documents: int = 0,
          evaluation: list[str] = (), progress=None, stop=None) -> tuple[list[dict], CreateReport]:
    """RAFT rows (canonical messages + provenance) from chunks. progress(done, total, what)."""
    s = settings
    if not chunks:
        raise DataError("the documents hold no text to make questions from.")
    rng = random.Random(s.seed)
    n_used = chunks_used(len(chunks), s)  # spread over all documents, not the first few
    used = [round(i * (len(chunks) - 1) / max(1, n_used - 1)) for i in range(n_used)] if n_used < len(chunks) \
        else list(range(len(chunks)))
    total = len(used) * (1 + s.questions_per_chunk)
    report = CreateReport(mode="raft", teacher=teacher.name, target=len(used) * s.questions_per_chunk)
    done = [0]

    def tick(what):
        done[0] += 1
        if progress:
            u = teacher.usage
            progress(min(done[0], total), total, f"{what} · {u.requests} requests, "
                     f"{u.prompt_tokens + u.completion_tokens} tokens")

    # --- questions, per chunk
    replies = teacher.complete_many([question_prompt(chunks[i], s.questions_per_chunk) for i in used], stop=stop,
                                    on_done=lambda: tick("questions"))
    seen, leaks = F.Seen(s.similarity), F.Seen(s.similarity)
    for i, q in enumerate(evaluation):
        leaks.add(q, f"evaluation row {i + 1}")
    asked = []  # (chunk index, question)
    for i, where, reply in report.replies("questions", ((i, chunks[i].id, r) for i, r in zip(used, replies))):
        try:
            questions = F.parse_strings(reply)[:s.questions_per_chunk]
        except F.ReplyError as e:
            report.drop("questions", where, e, "refused" if "refused" in e.reason else "unreadable reply")
            continue
        for q in questions:
            report.generated += 1
            problem = F.length_problem(q, "question", s.min_chars, s.max_chars)
            leak, repeat = leaks.match(q), seen.match(q)
            if problem:
                report.drop("filter", where, problem, problem.reason.split(" (")[0])
            elif leak:
                report.drop("filter", where, F.RowError("question", f"repeats {leak[1]} ({leak[0]})"),
                            "overlaps the evaluation rows")
            elif repeat:
                report.drop("filter", where, F.RowError("question", f"{repeat[0]} duplicate of a question of "
                                                        f"{repeat[1]}"), f"{repeat[0]} duplicate")
            else:
                seen.add(q, where)
                asked.append((i, q))

    # --- answers, quoting the oracle
    replies = teacher.complete_many([answer_prompt(chunks[i], q) for i, q in asked], stop=stop,
                                    on_done=lambda: tick("answers"))
    answered, corrected, quotes_picked = [], 0, 0
    for (i, q), where, reply in report.replies("answer", ((k, chunks[k[0]].id, r) for k, r in zip(asked, replies))):
        try:
            answer, fixed, picked = settle_answer(reply, chunks[i].text)
        except F.RowError as e:
            kind = e.reason.split(":")[0].split(" between")[0].split(" after")[0]
            report.drop("answer", where, e, kind)
            continue
        problem = F.length_problem(answer, "answer", s.min_chars, s.max_chars)
        if problem:
            report.drop("filter", where, problem, problem.reason.split(" (")[0])
            continue
        corrected += fixed
        quotes_picked += picked
        answered.append((i, q, answer))
    if stop is not None and stop.is_set():
        report.ended = f"stopped by the user after {report.requests} requests"

    # --- rows: oracle + distractors, shuffled; a fixed share without the oracle
    absent = set(rng.sample(range(len(answered)), round(s.oracle_absent * len(answered))))
    rows = []
    for n, (i, q, answer) in enumerate(answered):
        picked = distractors_for(i, chunks, s.distractors + (1 if n in absent else 0), rng)
        docs = picked if n in absent else picked + [i]
        rng.shuffle(docs)
        context = "\n".join(f"<DOCUMENT>\n{chunks[d].text}\n</DOCUMENT>" for d in docs)
        rows.append({"messages": [{"role": "system", "content": ROW_SYSTEM},
                                  {"role": "user", "content": f"{context}\n\nQuestion: {q}"},
                                  {"role": "assistant", "content": answer}],
                     "provenance": dict(teacher=teacher.name, source=chunks[i].document,
                                        oracle=chunks[i].id, oracle_included=n not in absent,
                                        documents=[chunks[d].id for d in docs], settings=s.to_dict(RAFT_FIELDS))})
    report.kept = len(rows)
    report.usage = teacher.usage.line()
    report.extra = dict(documents=documents or len({c.document for c in chunks}), chunks_used=len(used),
                        rows_without_oracle=len(absent), quotes_corrected=corrected,
                        quotes_picked_from_the_passage=quotes_picked)
    return rows, report
