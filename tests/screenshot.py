"""The README's picture (`make screenshot`, never a test): the real app in a real browser (Debian's chromium) after a
real run of the bundled default model: the demo's data (examples/facts.jsonl) uploaded, the "quick demo" preset,
Start, and the Train tab pictured once the run completed, its loss curve and next steps on screen.

    .venv/bin/python tests/screenshot.py [OUT.png]      # default: examples/app-screenshot.png

Minutes on a CPU (the run trains 30 steps). Prints where the picture went."""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from apptools import ROOT, App  # noqa: E402
from test_browser import ARGS, CHROMIUM, field, open_page, upload_checked  # noqa: E402


def take(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, App(Path(tmp)) as app, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = open_page(browser, app)
        upload_checked(page, ROOT / "examples" / "facts.jsonl", "32 kept")
        page.get_by_role("button", name="Train on this dataset →").click()
        page.get_by_role("tab", name="2 · Train", selected=True).wait_for()
        page.get_by_label("Preset (fills the settings)").click()
        page.get_by_role("option", name="quick demo").click()
        print("model:", field(page, "model_name").input_value())
        page.get_by_role("button", name="Start training").click()
        page.get_by_text("completed").first.wait_for(timeout=1800000)
        page.get_by_text("step 30/30").first.wait_for(timeout=30000)
        page.locator("#loss-plot .vega-embed").first.wait_for(timeout=30000)
        page.get_by_role("button", name="Evaluate →").wait_for(timeout=30000)
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(out))
        browser.close()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "examples" / "app-screenshot.png"
    take(target)
    print(target)
