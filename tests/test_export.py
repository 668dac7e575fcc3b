"""GGUF and Ollama exports (ftspace/export/): tiny random models of each catalogue architecture round-trip through
the writer (tensors and metadata read back by the gguf package's reader, the model by transformers' GGUF loader,
both compared with the model exported); the Modelfile's TEMPLATE renders what the chat template renders; every bad
input is one line and leaves nothing behind. The bundled model's real run is exported in tests/test_learning.py
(it shares the demo's trained run)."""

import contextlib
import json
from pathlib import Path

import pytest

from clitools import cli
from ftspace import export, runs
from ftspace.export import ollama
from ftspace.export.writer import ExportError

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' "
          "+ '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA3_LIKE = ("{{- bos_token }}{%- if messages[0]['role'] == 'system' %}{%- set system = messages[0]['content'] %}"
               "{%- set messages = messages[1:] %}{%- else %}{%- set system = 'Cutting Knowledge Date: December 2023' "
               "%}{%- endif %}{{- '<|start_header_id|>system<|end_header_id|>\n\n' + system + '<|eot_id|>' }}"
               "{%- for m in messages %}{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] "
               "+ '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}"
               "{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}")
GEMMA_LIKE = ("{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}"
              "{%- set first = messages[0]['content'] + '\n\n' -%}{%- set rest = messages[1:] -%}"
              "{%- else -%}{%- set first = '' -%}{%- set rest = messages -%}{%- endif -%}"
              "{%- for m in rest -%}{%- set role = 'model' if m['role'] == 'assistant' else m['role'] -%}"
              "{{ '<start_of_turn>' + role + '\n' + (first if loop.first else '') + m['content'] + '<end_of_turn>\n' }}"
              "{%- endfor -%}{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}")


@pytest.fixture(scope="module")
def small_tokenizer(smol_tokenizer):
    """A byte-level BPE tokenizer of 512 tokens, trained here like SmolLM2's and given its special tokens and chat
    template: the same kind of vocabulary, a hundred times smaller (a GGUF reader parses every token; SmolLM2's 49k
    cost seconds per read)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from ftspace.evaluation import read_probe

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    texts = [q["question"] + " " + " ".join(q["answers"]) for q in read_probe()] * 4
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<|endoftext|>", bos_token="<|im_start|>",
                                        eos_token="<|im_end|>", pad_token="<|im_end|>")
    tokenizer.chat_template = smol_tokenizer.chat_template
    return tokenizer


@pytest.fixture(scope="module")
def sentencepiece_tokenizer(tmp_path_factory):
    """A Gemma-style tokenizer of 400 pieces: a SentencePiece BPE model (bytes as <0xNN>, Gemma's special tokens and
    ids, a BOS on every text) trained here and converted by transformers as it converts Gemma's, with a Gemma-like
    chat template (the system prompt inside the first user turn)."""
    import sentencepiece
    from transformers import AutoTokenizer

    from ftspace.evaluation import read_probe

    root = tmp_path_factory.mktemp("sentencepiece")
    (root / "corpus.txt").write_text("\n".join(q["question"] + " " + " ".join(q["answers"]) for q in read_probe()))
    sentencepiece.SentencePieceTrainer.train(
        input=str(root / "corpus.txt"), model_prefix=str(root / "tokenizer"), vocab_size=400, model_type="bpe",
        byte_fallback=True, pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
        bos_piece="<bos>", user_defined_symbols=["<start_of_turn>", "<end_of_turn>"], add_dummy_prefix=False,
        normalization_rule_name="identity", split_digits=True, remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, minloglevel=2)
    (root / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
        "unk_token": "<unk>", "add_bos_token": True}))
    tokenizer = AutoTokenizer.from_pretrained(root)
    tokenizer.chat_template = GEMMA_LIKE
    return tokenizer


def tiny(kind: str, tokenizer, path: Path) -> Path:
    """A tiny random model of a catalogue architecture, with non-trivial norms, saved with the SmolLM2 tokenizer."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, Qwen3Config, \
        Qwen3ForCausalLM

    torch.manual_seed(0)
    common = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, tie_word_embeddings=True, **common))
    elif kind == "qwen3":  # a head size that is not hidden/heads, as Qwen3's (128 where 1024/16 = 64)
        model = Qwen3ForCausalLM(Qwen3Config(num_hidden_layers=2, head_dim=32, tie_word_embeddings=False, **common))
    else:  # six layers: Gemma 3's pattern of five sliding-window layers and one global; Gemma 3 1B's head size
        # (256: its attention is scaled by query_pre_attn_scalar 256, which llama.cpp takes for 1/sqrt(head size))
        model = Gemma3ForCausalLM(Gemma3TextConfig(num_hidden_layers=6, head_dim=256, sliding_window=16, **common))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def adapted_run(base: Path, root: Path) -> runs.Run:
    """A run folder holding a LoRA adapter on `base` whose B matrices are not zero (the merge must matter)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "up_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    from ftspace.config import RunConfig

    run = runs.Run(root / f"run-{base.name}")
    model.save_pretrained(run.adapter_dir)
    run.config_path.write_text(RunConfig(model_name=str(base), dataset="example:facts").to_yaml())
    AutoTokenizer.from_pretrained(base).save_pretrained(run.adapter_dir)
    return run


@pytest.mark.parametrize("kind,quant", [("llama", "f16"), ("qwen3", "q8_0"), ("gemma3", "bf16")])
def test_each_catalogue_architecture_round_trips(kind, quant, small_tokenizer, sentencepiece_tokenizer, tmp_path):
    """The export of a tiny model of each architecture: the gguf package's reader finds llama.cpp's names, shapes,
    types and hyperparameters and the run's tokenizer and template; transformers' GGUF loader reads back a model
    whose next-token distributions match the tuned model's (the parity check inside the export, asserted here)."""
    import gguf

    import copy

    tokenizer = sentencepiece_tokenizer if kind == "gemma3" else small_tokenizer  # each with its family's vocabulary
    if kind == "qwen3":  # and Qwen3's own chat template, tools and all
        tokenizer = copy.deepcopy(small_tokenizer)
        tokenizer.chat_template = family_template("qwen3")
    run = adapted_run(tiny(kind, tokenizer, tmp_path / kind), tmp_path)
    report = export.gguf(run, quant, ollama=True)
    modelfile = (Path(report["folder"]) / "Modelfile").read_text()
    if kind == "qwen3":  # the Modelfile's TEMPLATE writes the tools, checked on the tool conversations too
        assert report["ollama"]["tools"] == TOOLS_ALL and "{{ if .Tools }}" in modelfile
        assert report["ollama"]["conversations"] == len(CONVERSATIONS) + len(ollama.TOOL_CHECKS)
    else:
        assert report["ollama"]["tools"] == "none in the chat template" and ".Tools" not in modelfile
    folder = Path(report["folder"])
    assert folder == run.path / "exports" / quant
    assert sorted(p.name for p in folder.iterdir()) == sorted([report["file"], "Modelfile", "README.md", "export.json"])
    [by_transformers] = [c for c in report["parity"] if c["reader"] == "transformers"]
    assert by_transformers["prompts"] == export.PARITY_PROMPTS and by_transformers["decided_changes"] == []
    assert by_transformers["mean_kl"] <= by_transformers["kl_max"] and by_transformers["same_top_token"] > 0.9

    reader = gguf.GGUFReader(str(folder / report["file"]))
    meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.") or
            k in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.eos_token_id",
                  "tokenizer.ggml.bos_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_space_prefix")}
    assert meta["general.architecture"] == kind and meta[f"{kind}.block_count"] == (6 if kind == "gemma3" else 2)
    assert meta[f"{kind}.attention.head_count"] == 4 and meta[f"{kind}.attention.head_count_kv"] == 2
    assert meta[f"{kind}.attention.key_length"] == {"llama": 16, "qwen3": 32, "gemma3": 256}[kind]
    assert meta["tokenizer.chat_template"] == tokenizer.chat_template
    assert meta["general.sampling.temp"] == 0.0 and abs(meta["general.sampling.top_p"] - 0.95) < 1e-6
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == len(tokenizer)
    if kind == "gemma3":  # SentencePiece-style: llama.cpp's "llama" tokenizer, with scores and byte tokens
        assert (meta["tokenizer.ggml.model"], meta["tokenizer.ggml.pre"]) == ("llama", "default")
        assert (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"]) == (2, 1)
        assert meta["tokenizer.ggml.add_bos_token"] is True and meta["tokenizer.ggml.add_space_prefix"] is False
        types = reader.fields["tokenizer.ggml.token_type"].contents()
        assert types.count(gguf.TokenType.BYTE) == 256 and min(reader.fields["tokenizer.ggml.scores"].contents()) < 0
    else:
        assert (meta["tokenizer.ggml.model"], meta["tokenizer.ggml.pre"]) == ("gpt2", "gpt-2")
        assert (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"]) == (1, 2)
    names = {t.name: t for t in reader.tensors}
    want_type = {"f16": "F16", "bf16": "BF16", "q8_0": "Q8_0"}[quant]
    assert names["blk.0.attn_q.weight"].tensor_type.name == want_type
    assert names["blk.0.attn_norm.weight"].tensor_type.name == "F32"
    assert ("output.weight" in names) == (kind == "qwen3")  # tied embeddings are llama.cpp's token_embd
    if kind == "qwen3":
        assert {"blk.1.attn_q_norm.weight", "blk.1.attn_k_norm.weight"} <= set(names)
    if kind == "gemma3":
        assert meta["gemma3.attention.sliding_window"] == 16
        assert {"blk.5.post_attention_norm.weight", "blk.5.post_ffw_norm.weight"} <= set(names)


def test_the_merge_is_in_the_file_and_a_wrong_file_fails_parity(small_tokenizer, tmp_path, monkeypatch):
    """The parity check can fail: a GGUF written without the adapter's change (the base's weights) is caught, with
    what differed, and the folder is left as it was: the previous export of that type kept, byte for byte."""
    from ftspace.export import writer

    base = tiny("llama", small_tokenizer, tmp_path / "llama")
    run = adapted_run(base, tmp_path)
    good = export.gguf(run, "f16", ollama=True)
    before = {p.name: p.read_bytes() for p in Path(good["folder"]).iterdir()}
    real = writer.write_gguf

    def unmerged(model, *args, **kw):
        from transformers import AutoModelForCausalLM

        return real(AutoModelForCausalLM.from_pretrained(base), *args, **kw)

    monkeypatch.setattr(writer, "write_gguf", unmerged)
    with pytest.raises(ExportError, match="does not behave like run") as e:
        export.gguf(run, "f16")
    assert "\n" not in str(e.value) and "KL divergence" not in str(e.value) and "drift" in str(e.value)
    assert {p.name: p.read_bytes() for p in Path(good["folder"]).iterdir()} == before
    assert [p.name for p in (run.path / "exports").iterdir()] == ["f16"]  # no staging folder left either


CONVERSATIONS = ollama.CHECKS


@pytest.mark.parametrize("template", [None, CHATML, LLAMA3_LIKE, GEMMA_LIKE],
                         ids=["smollm2", "chatml", "llama3", "gemma"])
def test_the_modelfile_template_renders_what_the_chat_template_renders(template, smol_tokenizer):
    """The TEMPLATE derived from each family's chat template gives the tokenizer's exact prompt string for a
    conversation with a system prompt and several turns, one without a system prompt, and a single message; the
    stops are the tokens that end an assistant turn."""
    import copy

    tokenizer = copy.deepcopy(smol_tokenizer)
    if template:
        tokenizer.chat_template = template
    p = ollama.pieces(tokenizer)
    bos = tokenizer.bos_token if template in (LLAMA3_LIKE, GEMMA_LIKE) else ""
    go = ollama.go_template(p, bos)
    assert ollama.check(tokenizer, go, bos) == len(CONVERSATIONS)
    for messages in CONVERSATIONS:
        assert bos + ollama.render(go, messages) == tokenizer.apply_chat_template(messages, tokenize=False,
                                                                                  add_generation_prompt=True)
    if template is None:
        assert ollama.stops(tokenizer, p, [2]) == ["<|im_end|>"]
        assert "You are a helpful AI assistant named SmolLM" in go  # the default system prompt, when none is given
    text = ollama.modelfile("m-Q8_0.gguf", go, ["<|im_end|>"], {"temperature": 0.0, "top_p": 0.95})
    assert text.startswith("FROM ./m-Q8_0.gguf\nTEMPLATE \"\"\"") and 'PARAMETER stop "<|im_end|>"' in text


def family_template(name: str) -> str:
    """A model family's own chat template as Unsloth ships it (unsloth/chat_templates.py), read from its source:
    importing unsloth would patch transformers for the rest of the test process."""
    import ast
    import importlib.util

    tree = ast.parse(Path(importlib.util.find_spec("unsloth").origin).with_name("chat_templates.py").read_text())
    strings, table = {}, {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError, TypeError, SyntaxError):
                strings[node.targets[0].id] = ast.literal_eval(node.value)
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript) \
                and getattr(node.targets[0].value, "id", "") == "CHAT_TEMPLATES" and isinstance(node.value, ast.Tuple):
            table[ast.literal_eval(node.targets[0].slice)] = getattr(node.value.elts[0], "id", None)
    return strings[table[name]]


TOOLS_ALL = "the tool list, tool calls, their results"


@pytest.mark.parametrize("family, tools, tool_indent, calls_a_turn", [
    ("qwen3", TOOLS_ALL, None, 2), ("qwen-2.5", TOOLS_ALL, None, 2),
    ("llama-3.1", "the tool list, tool calls, one a turn, their results", 4, 1),
    ("gemma-3", "none in the chat template", None, 0)])
def test_the_families_own_templates_give_a_template_with_their_tools(family, tools, tool_indent, calls_a_turn,
                                                                     smol_tokenizer):
    """Qwen3's, Qwen2.5's, Llama 3.1's and Gemma 3's own chat templates: the derived TEMPLATE renders every check
    conversation as the chat template does, and where the template has tools, the tool list (Qwen: in the system
    turn; Llama: in the first user turn, indented), the assistant's calls (Qwen: several a turn, after its text;
    Llama: one, its text dropped) and the results (Qwen: consecutive ones in one user turn; Llama: each an ipython
    turn, written as a JSON string); Ollama writes the JSON of the tools and arguments itself."""
    import copy

    tokenizer = copy.deepcopy(smol_tokenizer)
    tokenizer.chat_template = family_template(family)
    derived = ollama.derive(tokenizer)
    assert derived["tools"] == tools
    assert derived["checked"] == len(CONVERSATIONS) + (len(ollama.TOOL_CHECKS) if calls_a_turn else 0)
    for messages in CONVERSATIONS:
        assert ollama.render(derived["template"], messages) == tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True)
    for offered, messages in ollama.TOOL_CHECKS if calls_a_turn else ():
        messages = [{**m, "tool_calls": m["tool_calls"][:calls_a_turn]} if m.get("tool_calls") else m
                    for m in messages]
        written = ollama.render(derived["template"], messages, offered)
        for i, tool in enumerate(offered or ()):  # the JSON put back as the chat template writes it
            written = written.replace(ollama.M(f"TOOL{i}"), json.dumps(tool, ensure_ascii=False, indent=tool_indent))
        for n, call in enumerate(c for m in messages for c in m.get("tool_calls") or ()):
            written = written.replace(ollama.M(f"ARGS{n}"), json.dumps(call["function"]["arguments"]))
        assert written == tokenizer.apply_chat_template(messages, tools=offered, tokenize=False,
                                                        add_generation_prompt=True)
    if calls_a_turn:
        assert "{{ if .Tools }}" in derived["template"] and "{{ range $k, $c := .ToolCalls }}" in derived["template"]


def test_tools_written_in_a_way_not_derived_leave_them_out_and_say_so(smol_tokenizer):
    """A template whose calls are not JSON (XML parameters, as Qwen3-Coder writes them): the TEMPLATE is the one
    without tools, still checked, and the report says why."""
    import copy

    tokenizer = copy.deepcopy(smol_tokenizer)
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{% for c in m.tool_calls or [] %}<function="
        "{{ c.function.name }}>{% for k, v in c.function.arguments.items() %}<parameter={{ k }}>{{ v }}</parameter>"
        "{% endfor %}</function>{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>"
        "assistant\n{% endif %}")
    derived = ollama.derive(tokenizer)
    assert derived["tools"].startswith("not written (the chat template's tools: it does not write a call's "
                                       "arguments as JSON")
    assert derived["checked"] == len(CONVERSATIONS) and "ToolCalls" not in derived["template"]
    line = export.parity_lines([], {"conversations": 3, "tools": derived["tools"]})[0]
    assert line.startswith("Ollama TEMPLATE: renders the prompt the chat template renders, to the character, on 3 "
                           "conversations (system prompt, several turns); tools: not written")


def test_a_template_ollama_cannot_express_is_refused_in_one_line(smol_tokenizer):
    import copy

    tokenizer = copy.deepcopy(smol_tokenizer)  # the last user turn written differently from earlier ones
    tokenizer.chat_template = ("{% for m in messages %}{% if loop.last %}[LAST]{% endif %}{{ m['role'] + ': ' + "
                               "m['content'] + '\n' }}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")
    with pytest.raises(ExportError, match="Ollama TEMPLATE") as e:
        ollama.check(tokenizer, ollama.go_template(ollama.pieces(tokenizer)))
    assert "\n" not in str(e.value)
    wrong = ollama.go_template(ollama.pieces(smol_tokenizer)).replace("<|im_start|>user", "<|im_start|>human")
    with pytest.raises(ExportError, match="at character"):
        ollama.check(smol_tokenizer, wrong)


def test_bad_exports_are_one_line_and_leave_nothing(small_tokenizer, tmp_path, monkeypatch):
    """A run without an adapter, an unknown type, a k-quant without llama.cpp, an architecture llama.cpp is not
    given here, a full disk while writing: each one line (exit 2 from the CLI), and no file left."""
    import errno
    import shutil

    import gguf

    run = adapted_run(tiny("llama", small_tokenizer, tmp_path / "llama"), tmp_path)
    env = {"FTSPACE_RUNS": str(run.path.parent), "FTSPACE_LLAMA_QUANTIZE": ""}
    for args, message in ((["--gguf", "q9_9"], "Unknown GGUF type 'q9_9': choose one of f16"),
                          (["--gguf", "q4_k_m"], "q4_k_m needs llama.cpp's quantizer"),
                          (["--merged", "--ollama"], "--ollama goes with --gguf")):
        done = cli("export", run.id, *args, env=env)
        assert done.returncode == 2 and message in done.stderr and done.stdout == "", done.stderr[-2000:]
    assert not (run.path / "exports").exists()

    empty = runs.Run(tmp_path / "no-adapter")
    (empty.path).mkdir()
    with pytest.raises(ExportError, match="has no adapter yet"):
        export.check(empty, "q8_0")

    config = json.loads((tmp_path / "llama" / "config.json").read_text())
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps(dict(config, architectures=["GPT2LMHeadModel"])))
    other = runs.Run(tmp_path / "gpt2-run")
    (other.adapter_dir).mkdir(parents=True)
    (other.adapter_dir / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tmp_path / "gpt2")}))
    with pytest.raises(ExportError, match="this model is GPT2LMHeadModel: export the merged 16-bit model instead"):
        export.gguf(other, "q8_0")

    # Tokenizers llama.cpp cannot be given: refused before any model loads, naming what they are
    for name, change, message in (
            ("unigram", {"model": {"type": "Unigram", "vocab": []}}, "this run's is Unigram"),
            ("whitespace", {"pre_tokenizer": {"type": "Whitespace"}}, "llama.cpp has no name for here \\(Whitespace\\)")):
        odd = runs.Run(tmp_path / f"{name}-run")
        shutil.copytree(run.adapter_dir, odd.adapter_dir)
        tokenizer_json = json.loads((odd.adapter_dir / "tokenizer.json").read_text())
        (odd.adapter_dir / "tokenizer.json").write_text(json.dumps(dict(tokenizer_json, **change)))
        with pytest.raises(ExportError, match=message):
            export.check(odd, "q8_0")

    def full_disk(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", full_disk)
    with pytest.raises(ExportError, match="No space left on device.*nothing was kept") as e:
        export.gguf(run, "q8_0", ollama=True)
    assert "\n" not in str(e.value)
    assert not any((run.path / "exports").rglob("*"))


def test_llama_cpp_checks_the_export_and_chat_answers_from_it(small_tokenizer, sentencepiece_tokenizer, tmp_path,
                                                             monkeypatch):
    """Where llama-cpp-python is installed (not in setup: a source build; README): every export is also read by
    llama.cpp (its own tokenizer on the run's prompt strings, its greedy answers and distributions), and `ftspace
    chat RUN --gguf` answers from the file, as the torch chat would greedily."""
    pytest.importorskip("llama_cpp")
    monkeypatch.delenv("FTSPACE_LLAMA_QUANTIZE", raising=False)
    from ftspace.chat import ChatModel, GgufChat
    from ftspace.config import GenerationSettings

    run = adapted_run(tiny("llama", small_tokenizer, tmp_path / "llama"), tmp_path)
    report = export.gguf(run, "f16")
    [by_llama] = [c for c in report["parity"] if c["reader"] == "llama.cpp"]
    assert by_llama["same_prompt_tokens"] == by_llama["prompts"] and by_llama["decided_changes"] == []
    assert by_llama["mean_kl"] < by_llama["kl_max"]

    asked = [{"role": "user", "content": "What is the capital of France?"}]
    settings = GenerationSettings(max_new_tokens=12, temperature=0.0)
    from_file = GgufChat(export.find_gguf(run)).reply(asked, settings)
    assert from_file and from_file == ChatModel.from_adapter(run.adapter_dir).reply(asked, settings)
    done = cli("chat", run.id, "--prompt", "What is the capital of France?", "--max-new-tokens", "12", "--gguf",
               env={"FTSPACE_RUNS": str(run.path.parent)})
    assert done.returncode == 0 and done.stdout.strip() == from_file, done.stderr[-2000:]
    assert f"answered by llama.cpp: {run.id}-F16.gguf" in done.stderr

    # Gemma 3 with its SentencePiece-style vocabulary: llama.cpp splits its prompts (BOS written by the template)
    # into the very tokens the run's tokenizer gives, and computes what the run does
    gemma = export.gguf(adapted_run(tiny("gemma3", sentencepiece_tokenizer, tmp_path / "gemma3"), tmp_path), "f16",
                        ollama=True)
    [by_llama] = [c for c in gemma["parity"] if c["reader"] == "llama.cpp"]
    assert by_llama["same_prompt_tokens"] == by_llama["prompts"] and by_llama["decided_changes"] == []

    # llama-cpp-python also quantizes: a k-quant made in-process by llama.cpp's own function, then checked
    k = export.gguf(run, "q4_k_m")
    assert export.quantizer() == "llama-cpp-python"
    assert {c["reader"] for c in k["parity"]} == {"transformers", "llama.cpp"}


def test_k_quants_go_through_llama_cpps_quantizer_and_its_failure_leaves_nothing(small_tokenizer, tmp_path,
                                                                                 monkeypatch):
    """q4_k_m: the f16 file handed to llama.cpp's quantizer (`llama-quantize IN OUT Q4_K_M`; here a stand-in that
    copies its input and records its arguments), the result checked like any export; a quantizer that fails is one
    line and leaves no file."""
    import stat
    import sys

    run = adapted_run(tiny("llama", small_tokenizer, tmp_path / "llama"), tmp_path)
    log = tmp_path / "quantize.log"
    stand_in = tmp_path / "llama-quantize"
    stand_in.write_text(f"#!{sys.executable}\nimport shutil, sys\nopen({str(log)!r}, 'a').write(' '.join(sys.argv[3:]) "
                        "+ '\\n')\nif sys.argv[3] == 'Q2_K':\n    sys.exit('cannot quantize: out of memory')\n"
                        "shutil.copyfile(sys.argv[1], sys.argv[2])\n")
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("FTSPACE_LLAMA_QUANTIZE", str(stand_in))
    report = export.gguf(run, "q4_k_m")
    assert report["file"] == f"{run.id}-Q4_K_M.gguf" and log.read_text() == "Q4_K_M\n"
    assert report["parity"][0]["kl_max"] == 0.1 and report["parity"][0]["decided_changes"] == []
    with pytest.raises(ExportError, match="quantizer failed making q2_k \\(cannot quantize: out of memory\\)"):
        export.gguf(run, "q2_k")
    assert not list((run.path / "exports" / "q2_k").glob("*.gguf"))
