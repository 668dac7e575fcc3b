"""Streaming chat: replies stream token by token from the one compute thread, and a reader who
leaves mid-reply stops the generation instead of leaving it running."""

import time

import pytest

from ftspace.chat import ChatModel, GenerationSettings, _generate_pool

PROMPT = [{"role": "user", "content": "Tell me a long story."}]


def generated_lengths(chat):
    """Wrap generate() to record how many new tokens each call produced."""
    lengths, generate = [], chat.model.generate

    def recording(**kwargs):
        out = generate(**kwargs)
        lengths.append(out.shape[1] - kwargs["input_ids"].shape[1])
        return out
    chat.model.generate = recording
    return lengths


def test_stream_grows_and_runs_on_reused_threads(tiny_model):
    chat = ChatModel.from_base(str(tiny_model))
    chat.stop_ids = []  # a random model may end at once; here only max_new_tokens ends a reply
    lengths = generated_lengths(chat)
    texts = list(chat.stream(PROMPT, GenerationSettings(max_new_tokens=12)))
    assert len(texts) >= 2 and all(b.startswith(a) for a, b in zip(texts, texts[1:]))
    assert lengths == [12]
    list(chat.stream(PROMPT, GenerationSettings(max_new_tokens=4)))
    assert len(_generate_pool()._threads) == 1  # no new thread per reply


def test_every_computation_runs_on_the_one_compute_thread(distinct_adapter, tiny_model):
    """Streams, whole replies, batches and evaluation's forward passes, asked from any thread, all compute on
    one thread: a second computing thread halves a CPU's decoding speed for the rest of the process (OpenMP
    stops spin-waiting once it has more threads than cores; bench section 5)."""
    import threading

    from ftspace.evaluation.running import Evaluator

    chat = ChatModel.from_adapter(distinct_adapter, str(tiny_model))
    where, generate, forward = [], chat.model.generate, chat.model.forward

    def recording_generate(**kwargs):
        where.append(threading.current_thread().name)
        return generate(**kwargs)

    def recording_forward(*args, **kwargs):
        where.append(threading.current_thread().name)
        return forward(*args, **kwargs)
    chat.model.generate = recording_generate
    settings = GenerationSettings(max_new_tokens=3)
    list(chat.stream(PROMPT, settings))
    chat.reply(PROMPT, settings, base=True)
    calls = [lambda: chat.complete_texts(["Hi", "Hello there"], settings),
             lambda: chat.reply(PROMPT, settings)]
    threads = [threading.Thread(target=c) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(where) == 4
    chat.model.forward = recording_forward
    models = Evaluator.__new__(Evaluator)
    models.chat, models.tokenizer = chat, chat.tokenizer
    models.loss({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
                base=False, max_length=64)
    assert len(where) == 5 and set(where) == {"ftspace-compute_0"}, where


def test_a_reader_leaving_mid_reply_stops_the_generation(tiny_model):
    chat = ChatModel.from_base(str(tiny_model))
    chat.stop_ids = []
    lengths = generated_lengths(chat)
    stream = chat.stream(PROMPT, GenerationSettings(max_new_tokens=2000))
    next(stream), next(stream)
    stream.close()  # what Gradio does when the page is closed or the user sends a new message
    deadline = time.time() + 60
    while not lengths and time.time() < deadline:
        time.sleep(0.05)
    assert lengths and lengths[0] < 100, lengths


def test_chat_frees_its_cache_then_refuses_rather_than_crowding_a_training_run(tiny_model, monkeypatch):
    """The GPU decision, with the GPU's free memory played by a stand-in (the real one: tests/test_gpu.py)."""
    import torch

    from ftspace import chat
    from ftspace.errors import ModelError

    need = sum(p.stat().st_size for p in tiny_model.glob("*.safetensors")) + chat.GPU_RESERVE_BYTES
    free = {"bytes": need - 1}  # not enough while our cached chat models are loaded
    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (free["bytes"], 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True) or free.update(bytes=need))
    monkeypatch.setitem(chat._CACHE, ("base", "/elsewhere"), object())
    chat._make_room_on_gpu(("base", str(tiny_model)))  # our cache freed, now it fits
    assert emptied and ("base", "/elsewhere") not in chat._CACHE

    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    free["bytes"] = need // 4  # a training run holds the rest
    with pytest.raises(ModelError, match="a training run is using it"):
        chat._make_room_on_gpu(("base", str(tiny_model)))


def test_a_training_run_starting_takes_back_the_gpu_from_chat(monkeypatch, runs_dir):
    """The app's queue calls chat.release_gpu before it launches a worker on this machine."""
    import time

    import torch

    from ftspace import chat, runs
    from ftspace.config import RunConfig
    from ftspace.targets import local
    from ftspace.targets.queue import Scheduler

    emptied, order = [], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    monkeypatch.setitem(chat._CACHE, ("base", "/somewhere"), object())
    monkeypatch.setattr(local, "launch", lambda run, resume=False: order.append(("launch", dict(chat._CACHE))))
    run = runs.create(RunConfig())
    run.set_status(status="queued", waiting=True, queued_at=time.time())
    Scheduler(before_launch=chat.release_gpu).kick()
    assert order == [("launch", {})] and emptied  # the cache was emptied before the worker started


@pytest.fixture(scope="module")
def distinct_adapter(tiny_model, tmp_path_factory):
    """A LoRA adapter whose B matrices are not zero, so tuned and base replies differ."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "up_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    path = tmp_path_factory.mktemp("distinct-adapter")
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(path)
    return path


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tuned_and_base_replies_stay_apart_when_generated_at_once(dtype, distinct_adapter, tiny_model, monkeypatch):
    """Two visitors on one loaded model, one asking for the tuned reply and one for the base reply at the
    same moment: each gets exactly what it would have got alone. In float32 the adapter is merged for tuned
    replies and unmerged for base ones (every switch here), in bfloat16 it stays unmerged: the replies are
    the same as a model that never merges gives."""
    import threading

    monkeypatch.setenv("FTSPACE_COMPUTE_DTYPE", dtype)
    unmerged = ChatModel.from_adapter(distinct_adapter, str(tiny_model))
    unmerged._mergeable = False
    chat = ChatModel.from_adapter(distinct_adapter, str(tiny_model))
    settings = GenerationSettings(max_new_tokens=48)
    def reply(base):
        text = ""
        for text in chat.stream(PROMPT, settings, base=base):
            pass
        return text

    alone = {base: reply(base) for base in (False, True)}
    assert alone[False] != alone[True]
    assert chat._mergeable == (dtype == "float32") and chat._merged is False  # a base reply came last
    assert reply(False) == alone[False] and chat._merged == (dtype == "float32")
    for base in (False, True):
        assert list(unmerged.stream(PROMPT, settings, base=base))[-1] == alone[base]
    got, start = [], threading.Barrier(8)

    def ask(base):
        start.wait()
        got.append((base, reply(base)))

    threads = [threading.Thread(target=ask, args=(k % 2 == 1,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8
    assert [text == alone[base] for base, text in got] == [True] * 8, got


def test_preloading_loads_once_in_the_background_and_the_first_reply_finds_it(distinct_adapter, tiny_model,
                                                                                 monkeypatch):
    """What the app does when a run completes or is picked in Chat: the model loads on a background thread; the
    message that follows takes it from the cache (no second load), and asking again does not load it again."""
    import shutil
    import threading

    from ftspace import chat

    run_dir = distinct_adapter.parent / "preload-run"
    shutil.copytree(distinct_adapter, run_dir / "adapter", dirs_exist_ok=True)
    loads, gate, entered, lines = [], threading.Event(), threading.Event(), []
    real = ChatModel.from_adapter

    def counted(adapter_dir, base=None):
        entered.set()
        gate.wait(60)  # held until the caller has seen that loading goes on in the background
        loads.append(threading.current_thread().name)
        return real(adapter_dir, str(tiny_model))
    monkeypatch.setattr(ChatModel, "from_adapter", staticmethod(counted))
    source = ("run", str(run_dir / "adapter"))
    future = chat.preload(source, log=lines.append)
    assert not future.done()  # the caller was not kept waiting
    assert entered.wait(30)  # the load is under way on its thread (holding the model cache's lock)
    t0 = time.monotonic()
    assert chat.preload(source, log=lines.append) is future  # asked twice while loading: one load
    assert time.monotonic() - t0 < 5  # ... and the second caller did not wait for the load either
    gate.set()
    resolved = future.result(timeout=120)
    assert loads == ["ftspace-preload_0"] and resolved in chat._CACHE
    assert len(lines) == 1 and "run preload-run loaded in the background" in lines[0], lines
    model = chat.load_cached(resolved)
    assert model is chat._CACHE[resolved] and loads == ["ftspace-preload_0"]  # the message found it loaded
    # the model found loaded is the run's: it answers as that adapter loaded afresh does (tuned, and base apart)
    fresh, settings = real(run_dir / "adapter"), GenerationSettings(max_new_tokens=8)
    model.stop_ids = fresh.stop_ids = []  # a random model may end at once: here only max_new_tokens ends a reply
    tuned = model.reply(PROMPT, settings)
    assert tuned and tuned == fresh.reply(PROMPT, settings) and tuned != model.reply(PROMPT, settings, base=True)
    assert chat.preload(source, log=lines.append) is future and loads == ["ftspace-preload_0"]

    # a source that cannot load says so in the app's log; the next message shows the error to the visitor
    bad = chat.preload(("run", str(run_dir / "missing" / "adapter")), log=lines.append)
    with pytest.raises(Exception):
        bad.result(timeout=60)
    assert "could not load run" in lines[-1] and "adapter_config.json" in lines[-1], lines


def test_a_batch_of_chats_gets_the_replies_each_would_get_alone(default_model_path, monkeypatch):
    # The bundled model (the tiny random one only ever writes newlines), in float32: the same arithmetic either way
    # (bfloat16 rounds differently with the batch's shape).
    monkeypatch.setenv("FTSPACE_COMPUTE_DTYPE", "float32")
    chat = ChatModel.from_base(str(default_model_path))
    chats = [PROMPT, [{"role": "user", "content": "Hi."}],
             [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Which river is longest,"
                                                                                   " the Nile or the Amazon?"}]]
    settings = GenerationSettings(max_new_tokens=12, temperature=0.0)
    alone = [chat.replies([c], settings)[0] for c in chats]
    lengths = generated_lengths(chat)
    together = chat.replies(chats, settings)
    assert len(lengths) == 1  # one generation for the three, the short prompts behind left padding
    assert together == alone and len(set(alone)) == 3 and all(alone)
    assert chat.reply(chats[1], settings) == alone[1]  # the one-chat path renders the same prompt
