# The two set-up commands of the README. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test core-only install install-dev bench mutation clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# stamp files so a second `make` does not reinstall; packaging changes trigger a reinstall. Both install
# everything: the demo the torch extra, the tests the dev extra (which includes the torch extra).
# The core alone (`pip install .`, no torch) is checked by .ci/core_only.sh (make core-only).
PACKAGING := pyproject.toml setup.py

$(VENV)/.installed: $(PACKAGING) | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[torch]'
	touch $@

$(VENV)/.installed-dev: $(PACKAGING) | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/ladd demo --workdir demo-out

test: install-dev
	$(BIN)/python -m pytest -q

# a fresh venv with the core alone: torch-free commands work, torch ones name the extra (CI runs it)
core-only:
	PYTHON=$(PYTHON) .ci/core_only.sh

# benchmarks run one after another (they time the CPU), save their measured data as
# benchmarks/results/*.json and rewrite their pages in benchmarks/RESULTS/ from it; each script's
# --render-only re-renders its section(s) from the saved JSON without measuring. The storage parts
# share labelers through benchmarks/_work/storage, emptied first so that they are retrained.
bench: install-dev
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/container_io.py
	$(BIN)/python benchmarks/size_mtt.py
	$(BIN)/python benchmarks/torch_loader.py
	$(BIN)/python benchmarks/label_pass.py
	rm -rf benchmarks/_work/storage
	$(BIN)/python benchmarks/storage_table1.py
	$(BIN)/python benchmarks/storage_s1.py
	$(BIN)/python benchmarks/storage_codecs.py
	$(BIN)/python benchmarks/storage_compressors.py
	$(BIN)/python benchmarks/stream_codecs.py
	$(BIN)/python benchmarks/convert_speed.py
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/students.py
	test -f demo-out/digits_ipc5_uint8.dla.h5 || $(BIN)/ladd demo --workdir demo-out
	$(BIN)/python benchmarks/demo_students.py

# mutation testing of the format core (pyproject [tool.mutmut]; benchmarks/mutation.py says what is checked):
# the first run makes mutants/ and the test stats, the second checks the small modules whole, a random sample
# of each large one, and every survivor again. Resumable. LADD_MUTATION: tests/conftest.py; one thread:
# forked workers deadlock on an OpenMP pool.
MUTMUT = LADD_MUTATION=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/mutmut
mutation: install-dev
	$(BIN)/pip install --quiet -e '.[dev,mutation]'
	$(MUTMUT) run "ladd_format.geometry.x_crop_length__mutmut_1" || true
	names="$$($(BIN)/python benchmarks/mutation.py --names)"; [ -z "$$names" ] || $(MUTMUT) run $$names || true
	$(BIN)/python benchmarks/mutation.py

clean:
	rm -rf demo-out .pytest_cache benchmarks/_work mutants
