"""Dataset creation: synthetic pairs and RAFT rows from a teacher (fake OpenAI server, the fake Hub's
Inference Providers route, and the real bundled model), filtering, documents, the CLI."""

import json
import re
import zipfile

import pytest

from apptools import ROOT
from fakehub import FakeHub
from fakeopenai import FakeOpenAI
from ftspace.data import load_dataset
from ftspace.data.create import CreateSettings, raft, synth, teacher as T, write_rows
from ftspace.data.create import filters as F
from ftspace.data.create.documents import Chunk, chunk, document_files, read_document
from ftspace.errors import ConfigError, DataError

SEEDS = [{"question": "What is the boiling point of water at sea level?", "answer": "100 degrees Celsius."},
         {"question": "Which planet is known as the Red Planet?", "answer": "Mars."},
         {"question": "Who wrote Romeo and Juliet?", "answer": "William Shakespeare."},
         {"question": "What is the largest ocean on Earth?", "answer": "The Pacific Ocean."},
         {"question": "How many continents are there?", "answer": "Seven."}]
KEY = "sk-test-secret-key-987654"


def openai_settings(server, **kw):
    return CreateSettings(teacher="openai", teacher_url=server.url + "/v1", teacher_model="fake-teacher", **kw)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(T, "BACKOFF_S", 0.01)


# --- parsing teacher replies


def test_replies_parse_into_pairs_or_one_clear_reason():
    pairs = F.parse_items('```json\n[{"question": "A?", "answer": "a"}, {"q": "B?", "a": "b"}]\n```')
    assert pairs == [{"question": "A?", "answer": "a"}, {"question": "B?", "answer": "b"}]
    assert F.parse_items('{"question": "A?", "answer": "a"}\n{"question": "B?", "answer": "b"}')[1]["answer"] == "b"
    assert F.parse_items("Question: A?\nAnswer: a\n\nQuestion: B?\nAnswer: b") == pairs
    assert F.parse_items('{"pairs": [{"question": "A?", "answer": "a"}]}') == pairs[:1]
    missing = F.parse_items('[{"question": "A?"}, {"question": "B?", "answer": "  "}, 3]')
    assert [(e.field, e.reason) for e in missing] == [("[0].answer", "missing or empty"),
                                                       ("[1].answer", "missing or empty"), ("[2]", "not an object: '3'")]
    with pytest.raises(F.ReplyError, match="not JSON"):
        F.parse_items('[{"question": "A?", "answer": ')
    with pytest.raises(F.ReplyError, match="refused"):
        F.parse_items("I'm sorry, but I can't help with that.")
    with pytest.raises(F.ReplyError, match="empty reply"):
        F.parse_items("")
    assert F.parse_strings('["Q1?", "Q2?"]') == ["Q1?", "Q2?"]
    assert F.parse_strings("1. What is X?\n2) Where is Y?\nSome chatter.") == ["What is X?", "Where is Y?"]


def test_near_duplicates_and_leaks_are_found():
    seen = F.Seen(0.8)
    seen.add("What is the capital of France?", "seed 1")
    assert seen.match("what is the capital of France") == ("exact", "seed 1")
    assert seen.match("What is the capital city of France?") is None  # 4/7 word pairs shared
    assert seen.match("So, what is the capital of France?") == ("near", "seed 1")
    assert seen.match("What is the capital of Spain?") is None


# --- synthetic pairs through an OpenAI-compatible server


def scripted_synth_replies():
    good = [{"question": "What is the chemical symbol for gold?", "answer": "Au."},
            {"question": "Who wrote Romeo and Juliet?", "answer": "Shakespeare."},  # exact repeat of a seed
            {"question": "So which planet is known as the Red Planet?", "answer": "Mars."},  # near repeat of a seed
            {"question": "What is the tallest mountain on Earth?", "answer": "Mount Everest."}]  # an eval row
    return [(429, {"error": {"message": "rate limited"}}), json.dumps(good),  # rate-limited once, then answered
            "Sure! Here you go: [{\"question\": \"What is", "I'm sorry, but I cannot help with that.",
            json.dumps([{"question": "How many legs does a spider have?"}, {"question": "x", "answer": "Eight."}]),
            "```json\n" + json.dumps([{"question": "What gas do plants absorb?", "answer": "Carbon dioxide."}]) + "\n```",
            json.dumps([{"question": "What is the freezing point of water?", "answer": "0 degrees Celsius."},
                        {"question": "What is the freezing point of water?", "answer": "Zero."}])]


def test_synth_through_an_openai_server_keeps_good_pairs_and_says_why_others_dropped(tmp_path, write):
    script = scripted_synth_replies()
    evaluation = write("test.jsonl", json.dumps({"question": "What is the tallest mountain on Earth?",
                                                 "answer": "Everest"}) + "\n")
    with FakeOpenAI(script=script, reply=lambda m: "[]") as server:
        s = openai_settings(server, num_pairs=4, pairs_per_request=2, concurrency=1, min_chars=3,
                            eval_dataset=str(evaluation))
        teacher = T.Teacher(s, key=KEY)
        pairs, report = synth.synthesize(s, teacher, SEEDS, evaluation=synth.eval_questions(str(evaluation)))
        prompts, headers = server.prompts(), [r["headers"] for r in server.requests]
    assert [p["question"] for p in pairs] == ["What is the chemical symbol for gold?", "What gas do plants absorb?",
                                              "What is the freezing point of water?"]
    assert report.kept == 3 and "ended after" in report.ended  # asked for 4: the budget of requests ran out
    assert report.reasons["exact duplicate"] == 2  # a seed, and the second freezing-point pair
    assert report.reasons["near duplicate"] == 1
    assert report.reasons["overlaps the evaluation rows"] == 1
    assert report.reasons["unreadable reply"] == 1 and report.reasons["refused"] == 1
    assert report.reasons["missing field"] == 1 and report.reasons["too short"] == 1
    drops = {(d["field"], d["reason"]) for d in report.dropped}
    assert ("question", "exact duplicate of seed 3") in drops
    assert any(f == "[0].answer" for f, _ in drops)
    assert teacher.usage.retries == 1 and teacher.usage.requests == len(prompts) - 1
    # every prompt shows seeds (their questions verbatim) and asks for JSON pairs
    assert all(sum(seed["question"] in p for seed in SEEDS) >= 5 and '"question"' in p for p in prompts)
    assert all(h["Authorization"] == f"Bearer {KEY}" for h in headers)
    rows = synth.as_rows(pairs, ("question", "answer"))
    out = write_rows(rows, tmp_path / "new.jsonl", report)
    text = out.read_text() + out.with_name("new.report.json").read_text()
    assert KEY not in text and "sk-test" not in text
    kept, data_report = load_dataset(str(out))
    assert data_report.format == "pairs" and len(kept) == 3
    assert json.loads(out.read_text().splitlines()[0])["provenance"]["teacher"] == "openai:fake-teacher"


def test_context_documents_reach_the_prompts_and_a_table_of_seeds_is_read(docs):
    from ftspace.data.create.documents import read_document

    with FakeOpenAI(reply=lambda m: json.dumps([{"question": "Where does the Danube end?", "answer": "Black Sea."}])) \
            as server:
        s = openai_settings(server, num_pairs=1, task="Geography quiz questions.")
        seeds = synth.seeds_from_table([["Where is Paris?", "In France."], ["", ""], ["Where is Rome?", "In Italy."]])
        pairs, _ = synth.synthesize(s, T.Teacher(s), seeds, context=[read_document(docs / "rivers.txt")])
        prompt = server.prompts()[0]
    assert pairs[0]["answer"] == "Black Sea."
    assert "Task: Geography quiz questions." in prompt and "The Danube flows through ten countries." in prompt
    assert "Where is Paris?" in prompt and "Where is Rome?" in prompt
    with pytest.raises(DataError, match="seed row 2: answer is empty"):
        synth.seeds_from_table([["Q?", "A"], ["Half a row?", ""]])


def test_judge_drops_answers_that_do_not_answer_and_concurrency_is_bounded():
    import itertools

    counter = itertools.count(1)

    def reply(messages):
        text = messages[-1]["content"]
        if "yes or no" in text:
            return "no" if "Banana" in text else "Yes."
        n = next(counter)
        return json.dumps([{"question": f"Distinct question number {n} about topic {n * 7}?",
                            "answer": "Banana." if n % 2 else f"Answer {n}."}])

    with FakeOpenAI(reply=reply, delay_s=0.05) as server:
        s = openai_settings(server, num_pairs=6, pairs_per_request=1, concurrency=3, judge=True)
        pairs, report = synth.synthesize(s, T.Teacher(s), SEEDS)
        assert server.max_in_flight <= 3 and server.max_in_flight >= 2
        assert all("Authorization" not in r["headers"] for r in server.requests)  # no key given: none sent
    assert len(pairs) == 6 and all("Banana" not in p["answer"] for p in pairs)
    assert report.reasons["judged not an answer"] >= 3


def test_a_teacher_whose_replies_are_mostly_unusable_gets_its_next_requests_at_once():
    import itertools

    counter = itertools.count(1)

    def reply(messages):  # one usable pair in three replies
        n = next(counter)
        return (json.dumps([{"question": f"Distinct question number {n} about topic {n * 7}?", "answer": f"A{n}."}])
                if n % 3 == 0 else "Here are some ideas about rivers and seas.")

    with FakeOpenAI(reply=reply, delay_s=0.2) as server:
        s = openai_settings(server, num_pairs=2, pairs_per_request=5, concurrency=4)
        pairs, report = synth.synthesize(s, T.Teacher(s), SEEDS)
        in_flight = server.max_in_flight
    # The first round asks once (5 pairs expected of it); seeing none kept, the next asks 4 at once rather than one
    # round per request.
    assert len(pairs) == 2 and report.reasons["unreadable reply"] >= 2
    assert in_flight == 4 and report.requests <= 9


def test_a_teacher_that_keeps_failing_ends_in_one_line_not_a_crash():
    with FakeOpenAI(reply=lambda m: (503, {"error": "overloaded"})) as server:
        s = openai_settings(server, num_pairs=2, retries=1, concurrency=1)
        teacher = T.Teacher(s)
        pairs, report = synth.synthesize(s, teacher, SEEDS)
    assert pairs == [] and report.reasons["teacher request failed"] == report.requests
    assert "answered 503 (after 1 retries)" in report.dropped[0]["reason"]
    with FakeOpenAI(reply=lambda m: "[]", delay_s=1.5) as server:
        s = openai_settings(server, timeout=1, retries=1)
        with pytest.raises(T.TeacherError, match=r"no answer within 1 s \(after 1 retries\)"):
            T.Teacher(s).complete([{"role": "user", "content": "hi"}])
        assert len(server.requests) == 2
    with FakeOpenAI(reply=lambda m: (401, {"error": "bad key"})) as server:
        with pytest.raises(T.TeacherError, match="refused the request \\(401"):
            T.Teacher(openai_settings(server)).complete([{"role": "user", "content": "hi"}])
    with pytest.raises(ConfigError, match="teacher_url"):
        T.Teacher(CreateSettings(teacher="openai", teacher_model="m"))


# --- Inference Providers through InferenceClient, with the caller's own token


def test_hf_teacher_calls_inference_providers_with_the_callers_token(monkeypatch):
    with FakeHub(token="hf_server_secret_000") as hub:
        hub.tokens["hf_visitor_token_111"] = "visitor"
        hub.chat_reply = lambda messages: json.dumps([{"question": "What is the speed of light?",
                                                       "answer": "About 300,000 km/s."}])
        monkeypatch.setenv("HF_INFERENCE_ROUTER", hub.url)
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", "hf_server_secret_000")
        s = CreateSettings(teacher="hf", teacher_model="org/teacher-model", num_pairs=1, pairs_per_request=1)
        pairs, report = synth.synthesize(s, T.Teacher(s, token="hf_visitor_token_111"), SEEDS)
        assert pairs[0]["question"] == "What is the speed of light?"
        assert hub.inference_users == ["visitor"]
        # on a shared app a signed-out visitor has no token: the server's HF_TOKEN is not used in its place
        from ftspace.access import hub_token

        monkeypatch.setenv("FTSPACE_MULTIUSER", "1")
        with pytest.raises(ConfigError, match="sign in"):
            T.Teacher(s, token=hub_token(oauth_token=None))
        assert hub.inference_users == ["visitor"]


# --- documents and RAFT


DOCS = {
    "volcanoes.md": "# Volcanoes\n\nMount Etna is the most active volcano in Europe. It stands on the east coast of "
                    "Sicily. Its eruptions have been recorded since 1500 BC.\n\nVesuvius destroyed Pompeii in 79 AD. "
                    "It is the only active volcano on the European mainland.",
    "rivers.txt": "The Danube flows through ten countries. It rises in the Black Forest and ends in the Black Sea.\n\n"
                  "The Rhine carries more goods than any other European river. It starts in the Swiss Alps.",
    "bees.html": "<html><head><style>p{}</style><script>var x;</script></head><body><nav>Home</nav><h1>Bees</h1>"
                 "<p>A honey bee colony has one queen.</p><p>Worker bees live about six weeks in summer.</p>"
                 "</body></html>",
}


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF holding `text` in Helvetica (what a word processor's export reduces to)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)


def minimal_docx(paragraphs: list[str]) -> bytes:
    import io

    ns = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", f'<w:document xmlns:w="{ns}"><w:body>{body}</w:body></w:document>')
    return buf.getvalue()


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    (folder / "glaciers.pdf").write_bytes(minimal_pdf("Glaciers store about seventy percent of the fresh water on Earth."))
    (folder / "tea.docx").write_bytes(minimal_docx(["Green tea is not fermented.", "Black tea is fully oxidised."]))
    return folder


def test_documents_of_each_kind_are_read_and_bad_ones_refused_in_one_line(docs, tmp_path):
    files = document_files([docs])
    assert [f.name for f in files] == ["bees.html", "glaciers.pdf", "rivers.txt", "tea.docx", "volcanoes.md"]
    assert read_document(docs / "glaciers.pdf") == "Glaciers store about seventy percent of the fresh water on Earth."
    assert read_document(docs / "tea.docx") == "Green tea is not fermented.\n\nBlack tea is fully oxidised."
    bees = read_document(docs / "bees.html")
    assert "A honey bee colony has one queen." in bees and "var x" not in bees and "Home" not in bees
    (tmp_path / "x.xlsx").write_bytes(b"PK")
    with pytest.raises(DataError, match=r"^x.xlsx: not a document ftspace reads"):
        document_files([tmp_path / "x.xlsx"])
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    with pytest.raises(DataError, match=r"^broken.pdf: "):
        read_document(tmp_path / "broken.pdf")
    (tmp_path / "broken.docx").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"^broken.docx: not a readable .docx"):
        read_document(tmp_path / "broken.docx")


def test_chunks_follow_the_token_size_and_overlap(default_model_path):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(default_model_path / "tokenizer.json"))
    text = " ".join(f"Sentence number {i} says something about topic {i}." for i in range(60))
    chunks = chunk("doc.txt", text, size=48, overlap=8)
    lengths = [len(tok.encode(c.text, add_special_tokens=False).ids) for c in chunks]
    assert max(lengths) <= 48 and min(lengths[:-1]) >= 36  # cut at a sentence end in the last quarter
    assert all(c.text.endswith(".") for c in chunks[:-1])
    assert all(a.text[-20:] in b.text for a, b in zip(chunks, chunks[1:]))  # 8 tokens of overlap
    assert [c.id for c in chunks[:2]] == ["doc.txt#1", "doc.txt#2"]


def passage_of(text: str) -> str:
    return text.split("<passage>\n", 1)[1].split("\n</passage>", 1)[0]


def raft_teacher(messages):
    """Questions about the passage; answers quoting its first sentence (sometimes loosely, once invented)."""
    text = messages[-1]["content"]
    passage = passage_of(text)
    first = raft.sentences(passage)[0]
    if "JSON list of strings" in text:
        return json.dumps([f"What does the passage say about {first.split()[0]} ({len(passage)})?",
                           f"Why does it matter that {first[:-1].lower()}?"])
    question = text.split("Question: ", 1)[1].split("\n", 1)[0]
    if "Why" in question and "Etna" in passage:
        return "##begin_quote##Volcanoes erupt on Mars daily.##end_quote##\n<ANSWER>: no idea"  # invented
    quote = first.replace(" ", "  ", 1) if "Danube" in first else first  # loose spacing: corrected
    return f"The passage says ##begin_quote##{quote}##end_quote##, so that answers it.\n<ANSWER>: {first}"


def test_raft_rows_hold_the_oracle_in_the_stated_share_and_quote_it_verbatim(docs, tmp_path):
    with FakeOpenAI(reply=raft_teacher) as server:
        s = openai_settings(server, chunk_tokens=24, chunk_overlap=4, distractors=2, questions_per_chunk=2,
                            oracle_absent=0.25, seed=3)
        chunks, n_docs = raft.load_chunks([docs], s)
        by_id = {c.id: c for c in chunks}
        rows, report = raft.build(s, T.Teacher(s), chunks, documents=n_docs)
        prompts = server.prompts()
    assert n_docs == 5 and len(chunks) >= 7
    assert all(passage_of(p) in {c.text for c in chunks} for p in prompts)  # every prompt carries a chunk
    assert report.reasons["quote not in the passage"] >= 1 and report.extra["quotes_corrected"] >= 1
    assert len(rows) == report.kept >= 8
    absent = [r for r in rows if not r["provenance"]["oracle_included"]]
    assert len(absent) == round(0.25 * len(rows)) == report.extra["rows_without_oracle"]
    for row in rows:
        p = row["provenance"]
        oracle = by_id[p["oracle"]]
        user, answer = row["messages"][1]["content"], row["messages"][2]["content"]
        shown = re.findall(r"<DOCUMENT>\n(.*?)\n</DOCUMENT>", user, re.S)
        assert shown == [by_id[d].text for d in p["documents"]]
        assert len(shown) == 3 and len(set(p["documents"])) == 3
        assert (p["oracle"] in p["documents"]) == p["oracle_included"]  # never listed as a distractor
        assert all(by_id[d].document != oracle.document for d in p["documents"] if d != p["oracle"])  # other docs
        quotes = raft.QUOTE.findall(answer)
        assert quotes and all(q in oracle.text for q in quotes)
        assert answer.rstrip().splitlines()[-1].startswith("<ANSWER>:")
        assert p["settings"]["oracle_absent"] == 0.25 and p["teacher"] == "openai:fake-teacher"
    out = write_rows(rows, tmp_path / "raft.jsonl", report)
    kept, data_report = load_dataset(str(out))
    assert data_report.format == "messages" and data_report.rows_kept == len(rows)


def test_distractors_come_from_the_same_document_away_from_the_oracle_when_it_is_the_only_one():
    import random

    chunks = [Chunk(f"a#{i}", "a", f"text {i}") for i in range(6)]
    for _ in range(20):
        picked = raft.distractors_for(2, chunks, 3, random.Random(_))
        assert len(picked) == 3 and not {1, 2, 3} & set(picked)


# --- the CLI, and the real bundled model as teacher


def run_cli(*args, env=None, cwd=None):
    """`ftspace data ARGS` as a real process (the teacher's key must stay out of everything it prints; the bundled
    teacher generates faster in a process of its own than inside the test process)."""
    from clitools import cli_process

    return cli_process("data", *args, env=env, cwd=cwd or ROOT)


def test_cli_raft_writes_rows_and_prints_the_path_last(docs, tmp_path):
    with FakeOpenAI(reply=raft_teacher) as server:
        out = run_cli("raft", str(docs), "--teacher", "openai", "--teacher-url", server.url + "/v1",
                      "--teacher-model", "m", "--chunk-tokens", "24", "--chunk-overlap", "4", "--distractors", "1",
                      "--max-chunks", "4", "--quiet", env={"FTSPACE_TEACHER_KEY": KEY}, cwd=tmp_path)
        assert all(r["headers"]["Authorization"] == f"Bearer {KEY}" for r in server.requests)
    assert out.returncode == 0, out.stderr
    path = tmp_path / out.stdout.strip().splitlines()[-1]
    assert path.parent.name == "created" and path.name.startswith("raft-")
    assert "4 documents" not in out.stderr and "5 documents" in out.stderr
    assert "format messages" in out.stderr and "tokens per example" in out.stderr  # the usual validation report
    assert KEY not in out.stderr + out.stdout + path.read_text()
    bad = run_cli("raft", str(docs / "nope.txt"), cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == "error: nope.txt: no such file or folder."


def test_the_bundled_model_as_teacher_writes_pairs_end_to_end(tmp_path, write):
    seeds = write("seeds.jsonl", "".join(json.dumps({"instruction": s["question"], "output": s["answer"]}) + "\n"
                                         for s in SEEDS))
    out = run_cli("synth", "--seeds", str(seeds), "--num-pairs", "2", "--max-tokens", "160", "--out",
                  str(tmp_path / "new.jsonl"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(tmp_path / "new.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "new.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(set(r) == {"instruction", "output", "provenance"} for r in rows)  # the seeds' format
    assert all(r["instruction"].strip() and r["output"].strip() for r in rows)
    assert {r["instruction"] for r in rows}.isdisjoint(s["question"] for s in SEEDS)
    assert "pairs kept of" in out.stderr and "format alpaca" in out.stderr


def test_the_bundled_model_as_teacher_writes_raft_rows_end_to_end(docs, tmp_path):
    keep = ["volcanoes.md", "rivers.txt", "bees.html"]
    for f in docs.iterdir():
        if f.name not in keep:
            f.unlink()
    out = run_cli("raft", str(docs), "--questions-per-chunk", "2", "--distractors", "1", "--max-tokens", "160",
                  "--out", str(tmp_path / "raft.jsonl"), "--quiet")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in (tmp_path / "raft.jsonl").read_text().splitlines()]
    texts = {name: read_document(docs / name) for name in keep}
    assert rows and "RAFT rows kept of" in out.stderr and "format messages" in out.stderr
    for row in rows:
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        quotes = raft.QUOTE.findall(row["messages"][2]["content"])
        assert quotes and all(q in texts[row["provenance"]["source"]] for q in quotes)  # verbatim from the oracle
        assert "<ANSWER>:" in row["messages"][2]["content"] and "Question: " in row["messages"][1]["content"]
