"""A real browser (Debian's chromium via Playwright) clicks through the tabs: trains, evaluates, chats."""

import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from apptools import ROOT, App

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make setup` installs it (apt-get install chromium)")
        pytest.skip("chromium not installed (make setup installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def label_of(name):
    """A control's accessible name: "LoRA rank · lora_r" (a human label, then the field), or the field alone;
    the help text follows."""
    return re.compile(rf"(^|· ){name}\b")


def field(page, name):
    """A RunConfig (or CreateSettings) control, found by its field name."""
    return page.get_by_label(label_of(name)).first


def textbox(page, name):
    return page.get_by_role("textbox", name=label_of(name)).first  # get_by_label misses some textareas


def shown_text(page) -> str:
    """Everything the page shows: its text and the values in its fields."""
    return page.evaluate("() => document.body.innerText + '\\n' + [...document.querySelectorAll('input, textarea')]"
                         ".map(e => e.value).join('\\n')")


def assert_no_server_paths(page, app_dir):
    text = shown_text(page)
    for needle in (str(app_dir), str(ROOT), "/uploads/", "/runs/"):
        assert needle not in text, (needle, [line for line in text.splitlines() if needle in line][:3])


def open_settings(page):
    """The Train tab's "All settings" (folded: the tab opens with the model, the preset, Estimate and Start)."""
    if not field(page, "max_steps").is_visible():
        page.locator("#all-settings").get_by_text("All settings").first.click()
    expect(field(page, "max_steps")).to_be_visible()


def start_quick_run(page, model_path, steps: int):
    """On the Train tab (preset applied): the tiny model, `steps` steps of 128 tokens, Start."""
    model = field(page, "model_name")
    model.fill(str(model_path))
    model.press("Enter")
    open_settings(page)
    for name, value in [("max_steps", str(steps)), ("max_seq_length", "128")]:
        field(page, name).fill(value)
        field(page, name).press("Tab")
    page.get_by_role("button", name="Start training").click()


def open_page(browser, app):
    """A new page on the app, once it has its browser id (its load event keeps one in localStorage): an upload sent
    before that is the page session's (found all the same: targets.Caller.page)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app.url)
    page.wait_for_function("() => Object.keys(localStorage).some(k => k.includes('ftspace_browser_id'))",
                           timeout=60000)
    return page


def upload_checked(page, path, kept: str):
    """On the Dataset tab: upload `path`, wait for the check's report (`kept`: e.g. "8 kept")."""
    page.get_by_role("tab", name="1 · Dataset").click()
    page.locator("#data-upload input[type=file]").set_input_files(str(path))
    page.get_by_text(kept).first.wait_for(timeout=120000)


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# The Train tab after the tiny model's run, taken on every run into the ignored test-artifacts/ (tests change no
# tracked file; the README's picture is a real run's: `make screenshot`, tests/screenshot.py).
SCREENSHOT = ARTIFACTS / "app-screenshot.png"


def test_click_through_the_four_tabs(browser, tiny_model, tmp_path):
    """Dataset -> Train -> Evaluate -> Chat -> Publish by the next-step buttons, with human labels and no
    server path on any tab (the tiny model typed as a folder beside the app, as a self-hoster types theirs)."""
    (tmp_path / "tiny-llama").symlink_to(tiny_model)
    with App(tmp_path, cwd=tmp_path) as app:
        page = open_page(browser, app)

        # 1. Dataset: an uploaded file is checked and reported, shown by its name
        upload_checked(page, ROOT / "examples" / "chat.jsonl", "8 kept")
        page.get_by_text("format messages").or_(page.get_by_text("format **messages**")).first.wait_for()
        assert page.get_by_label("Dataset in use").input_value() == "chat.jsonl (uploaded)"
        assert_no_server_paths(page, tmp_path)
        shot(page, "1-dataset")

        # 2. Train, by the next-step button: it says which dataset it will use; labels are for people
        page.get_by_role("button", name="Train on this dataset →").click()
        page.get_by_role("tab", name="2 · Train", selected=True).wait_for()
        in_use = page.locator("#train-dataset").inner_text()
        assert "chat.jsonl (uploaded)" in in_use and "format messages" in in_use and "8 rows" in in_use, in_use
        # the simple path: the model, a preset, Estimate and Start in view; every other setting folded away
        expect(field(page, "model_name")).to_be_visible()
        expect(page.get_by_role("button", name="Start training")).to_be_visible()
        expect(field(page, "max_steps")).to_be_hidden()
        open_settings(page)
        for label in ("LoRA rank · lora_r", "Learning rate · learning_rate", "Training steps · max_steps"):
            page.get_by_text(label).first.wait_for(timeout=5000)
        page.get_by_label("Preset (fills the settings)").click()
        page.get_by_role("option", name="quick demo").click()
        expect(field(page, "learning_rate")).to_have_value("0.001")  # the preset filled the fields
        assert textbox(page, "dataset").input_value() == "chat.jsonl (uploaded)"
        page.get_by_role("button", name="Estimate").click()
        page.get_by_text("on this hardware").first.wait_for(timeout=60000)  # a time before any run: catalogued
        page.get_by_text("The same run from the command line").click()
        command = page.get_by_label("Command").input_value()
        assert command == "ftspace train --config run.yaml   # with your chat.jsonl in the same folder", command
        assert "dataset: chat.jsonl\n" in page.locator("#cli-yaml").inner_text()  # the file by name, no server path
        start_quick_run(page, "tiny-llama", steps=6)
        page.get_by_text("completed").first.wait_for(timeout=180000)
        page.get_by_text("step 6/6").first.wait_for(timeout=10000)
        # the buttons that cannot act on a completed run are off: Stop, and Resume (all its steps are done)
        expect(page.get_by_role("button", name="Stop", exact=True)).to_be_disabled(timeout=10000)
        expect(page.get_by_role("button", name="Resume", exact=True)).to_be_disabled()
        page.locator("#loss-plot .vega-embed").first.wait_for(timeout=10000)
        assert page.locator("#loss-plot .vega-embed").bounding_box()["height"] > 100
        page.get_by_role("button", name="Evaluate →").wait_for(timeout=10000)
        assert_no_server_paths(page, tmp_path)
        shot(page, "2-train")
        page.evaluate("window.scrollTo(0, 0)")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))  # the Train tab after the run, as the README's picture frames it
        run_id = page.get_by_label("Run", exact=True).input_value()
        assert run_id

        # Reloading the page re-attaches to the run.
        page.reload()
        page.get_by_role("tab", name="2 · Train").click()
        page.get_by_text(f"{run_id}").first.wait_for(timeout=20000)

        # 3. Evaluate, by the next-step button: the scorecard of the run against its base
        page.get_by_role("button", name="Evaluate →").click()
        page.get_by_role("tab", name="3 · Evaluate", selected=True).wait_for()
        expect(page.get_by_label("Run", exact=True).filter(visible=True)).to_have_value(run_id)  # the run came along
        page.get_by_label("Test dataset (optional)").fill("example:alpaca")
        rows = page.get_by_label("Test rows at most")
        rows.fill("3")
        rows.press("Tab")
        page.get_by_role("button", name="Evaluate", exact=True).click()
        page.locator("#eval-scorecard").get_by_text("Task gain").wait_for(timeout=180000)
        scorecard = page.locator("#eval-scorecard").inner_text()
        assert "Scored on 3 test prompts" in scorecard and "general change" in scorecard
        assert "token F1" in scorecard  # the task metric; the table beside it has every metric
        assert_no_server_paths(page, tmp_path)
        shot(page, "3-evaluate")

        # 4. Chat, by the Train tab's next step: the run answers, base model side by side
        page.get_by_role("tab", name="2 · Train").click()
        page.get_by_role("button", name="Chat with it →").click()
        page.get_by_role("tab", name="4 · Chat", selected=True).wait_for()
        page.get_by_text(re.compile(f"(Run {run_id} is loaded|Loading run {run_id} in the background)")).first.wait_for(
            timeout=60000)  # the run came along and its model is loading or loaded
        # only the fields of the source picked: a run of mine, not the base model or Hub repo fields
        expect(page.get_by_label("Hub adapter repo")).to_be_hidden()
        page.get_by_label("an adapter on the Hub").check()
        expect(page.get_by_label("Hub adapter repo")).to_be_visible()
        page.get_by_label("a run of mine").check()
        expect(page.get_by_label("Hub adapter repo")).to_be_hidden()
        temperature = page.get_by_label("number input for Temperature · temperature", exact=True)
        temperature.fill("1")  # a random-weight model's greedy reply can be only an end token
        temperature.press("Tab")
        page.get_by_role("textbox", name="Message", exact=True).fill("Hello there")
        page.get_by_role("button", name="Send").click()
        bots = page.locator("[data-testid='bot']")
        bots.nth(1).wait_for(timeout=120000)
        page.wait_for_function("() => [...document.querySelectorAll(\"[data-testid='bot']\")]"
                               ".every(e => e.innerText.trim().length > 0)", timeout=60000)
        assert bots.count() == 2
        assert_no_server_paths(page, tmp_path)
        shot(page, "3-chat")

        # 5. Publish, from chat: the card preview shows its loss curve and names the repository typed
        page.get_by_role("button", name="Publish this run →").click()
        page.get_by_role("tab", name="5 · Publish", selected=True).wait_for()
        page.get_by_text("A LoRA adapter for").wait_for(timeout=20000)  # the card preview of the run
        page.wait_for_function("() => { const i = document.querySelector('#pub-card img');"
                               " return i && i.complete && i.naturalWidth > 100; }", timeout=20000)
        # the textbox by role: a label match would also find a chat reply whose text holds "repository" (the
        # tiny model samples random words, and a bot message's aria-label is its text)
        repo = page.get_by_role("textbox", name="Repository", exact=True)
        repo.fill("alice/zorblax-tiny")
        repo.press("Tab")
        page.locator("#pub-card").get_by_text('"alice/zorblax-tiny"').first.wait_for(timeout=20000)
        # the GGUF export: checked against the run, then offered for download with its Modelfile shown
        page.get_by_role("button", name="Export GGUF").click()
        page.locator("#pub-export-result").get_by_text("checked against the run").wait_for(timeout=120000)
        result = page.locator("#pub-export-result").inner_text()
        assert f"{run_id}-Q8_0.gguf" in result and "greedy answers identical" in result and "FROM ./" in result
        page.get_by_role("button", name="Download GGUF").wait_for(timeout=20000)
        assert_no_server_paths(page, tmp_path)
        shot(page, "4-publish")

        page.get_by_role("tab", name="Runs").click()
        page.wait_for_function("id => (document.querySelector('#runs-table') || {innerText: ''}).innerText"
                               ".includes(id)", arg=run_id, timeout=20000)
        runs_text = page.locator("#runs-table").inner_text()
        assert "completed" in runs_text and "chat.jsonl (uploaded)" in runs_text
        assert "token F1 " in runs_text and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", runs_text)  # score, date
        # the run's loss curve, picked among the runs to compare
        page.get_by_label("Compare loss curves").click()
        page.get_by_role("option", name=run_id).click()
        page.locator("#runs-curves .vega-embed").first.wait_for(timeout=20000)
        assert page.locator("#runs-curves .vega-embed").bounding_box()["height"] > 100
        assert_no_server_paths(page, tmp_path)
        shot(page, "5-runs")
        # Delete asks first (Cancel keeps the run), then removes it and its row
        page.locator("#runs-table").get_by_text(run_id).filter(visible=True).first.click()
        expect(page.get_by_label("Selected run")).to_have_value(run_id)
        page.get_by_role("button", name="Delete selected…").click()
        page.get_by_text(f"Delete run {run_id} and every file in its folder").wait_for(timeout=10000)
        page.locator("#runs-cancel").click()
        page.get_by_role("button", name="Yes, delete it").wait_for(state="hidden", timeout=10000)
        assert (tmp_path / "runs" / run_id).is_dir()
        page.get_by_role("button", name="Delete selected…").click()
        page.get_by_role("button", name="Yes, delete it").click()
        page.wait_for_function("id => !document.querySelector('#runs-table').innerText.includes(id)", arg=run_id,
                               timeout=20000)
        assert not (tmp_path / "runs" / run_id).exists()
        assert app.alive()


def test_create_a_dataset_with_a_teacher_then_train_on_it(browser, tiny_model, tmp_path):
    """Dataset tab -> Create: a teacher (a fake OpenAI-compatible server) writes pairs from a seed file;
    the preview, the rows and "Use this dataset" lead to a run that trains on them."""
    import itertools
    import json

    from fakeopenai import FakeOpenAI

    counter = itertools.count(1)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"question": f"Seed question {i} about the sea?", "answer": f"Seed {i}."}) + "\n"
                             for i in range(5)))

    def reply(messages):
        n = next(counter)
        return json.dumps([{"question": f"What does lighthouse {n} guard at night ({n * 13})?",
                            "answer": f"Lighthouse {n} guards harbour {n}."}])

    with FakeOpenAI(reply=reply) as teacher, App(tmp_path) as app:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app.url)
        page.get_by_role("tab", name="1 · Dataset").click()
        page.get_by_text("Create a dataset with a teacher model").click()
        field(page, "teacher").click()
        page.get_by_role("option", name="openai", exact=True).click()
        for name, value in [("teacher_model", "fake-teacher"), ("teacher_url", teacher.url + "/v1")]:
            box = textbox(page, name)
            box.fill(value)
            box.press("Tab")
        for name, value in [("num_pairs", "6"), ("pairs_per_request", "1")]:
            field(page, name).fill(value)
            field(page, name).press("Tab")
        page.locator("#seed-file input[type=file]").set_input_files(str(seeds))
        # the upload landed: the file's row (named by its aria-label; the name is drawn as stem and suffix) with the
        # link to the copy the server keeps (while uploading, only a progress line names the file)
        page.locator("#seed-file").get_by_label("seeds.jsonl").wait_for(timeout=30000)
        page.locator("#seed-file").get_by_test_id("download-link").wait_for(timeout=30000)
        page.get_by_role("button", name="Preview cost and time").click()
        page.get_by_text("teacher requests").first.wait_for(timeout=30000)
        page.get_by_role("button", name="Create", exact=True).click()
        page.get_by_text("6 rows written to").first.wait_for(timeout=60000)
        shot(page, "create-dataset")
        assert "Lighthouse 1 guards harbour 1." in page.locator("#create-rows").inner_text()  # the rows preview
        assert all("Seed question" in p for p in teacher.prompts())  # the prompts carry the seeds
        page.get_by_role("button", name="Use this dataset →").click()
        page.get_by_text("format pairs").or_(page.get_by_text("format **pairs**")).first.wait_for(timeout=60000)
        page.get_by_text("6 kept").first.wait_for()

        page.get_by_role("tab", name="2 · Train").click()
        page.get_by_label("Preset (fills the settings)").click()
        page.get_by_role("option", name="quick demo").click()
        open_settings(page)
        expect(field(page, "learning_rate")).to_have_value("0.001")  # the preset filled the fields
        dataset = textbox(page, "dataset").input_value()
        assert dataset.startswith("synth-") and dataset.endswith(".jsonl (uploaded)")  # shown by its name
        start_quick_run(page, tiny_model, steps=2)
        page.get_by_text("completed").first.wait_for(timeout=180000)
        page.get_by_text("step 2/2").first.wait_for(timeout=10000)


def test_grpo_controls_and_the_replies_it_learns_from(browser, tiny_model, tmp_path):
    """Method grpo in the Train tab: its controls (rewards, replies per prompt, reply length) and the rewards'
    descriptions appear only for it; a run on prompts with answers trains by reward, and the tab shows the replies
    it sampled with their rewards, and each reward's curve."""
    (tmp_path / "tiny-llama").symlink_to(tiny_model)
    with App(tmp_path, cwd=tmp_path) as app:
        page = open_page(browser, app)
        page.get_by_role("tab", name="2 · Train").click()
        open_settings(page)
        expect(field(page, "num_generations")).to_be_hidden()
        field(page, "method").click()
        page.get_by_role("option", name="grpo").click()
        for name in ("rewards", "num_generations", "max_completion_length"):
            expect(field(page, name)).to_be_visible()
        page.get_by_text("The rewards").first.wait_for(timeout=5000)  # what each reward scores, in words
        page.get_by_text("correct_answer").first.wait_for(timeout=5000)
        textbox(page, "dataset").fill("example:arithmetic")
        textbox(page, "dataset").press("Tab")
        for name, value in [("max_completion_length", "8"), ("num_generations", "2")]:
            field(page, name).fill(value)
            field(page, name).press("Tab")
        start_quick_run(page, "tiny-llama", steps=2)
        page.get_by_text("completed").first.wait_for(timeout=180000)
        page.get_by_text("Replies at step 1").first.wait_for(timeout=20000)
        expect(page.get_by_role("columnheader", name="rewards").first).to_be_visible()
        page.locator("#loss-plot .vega-embed").first.wait_for(timeout=10000)
        assert "reward: correct_answer" in page.locator("#loss-plot").inner_text()  # each reward's own curve
        assert_no_server_paths(page, tmp_path)
        shot(page, "grpo-train")
        assert app.alive()
