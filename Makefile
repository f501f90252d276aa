# The two commands of the README: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA := data/shapes
PORT ?= 8501

.PHONY: run test data venv bench clean

venv: $(VENV)/.installed

# rebuilt whenever requirements.txt changes; torch and torchvision come from the wheels on local disk
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

data: $(DATA)/annotations/instances_test.json

# the generator writes the whole folder atomically, so the last split's file marks a complete dataset
$(DATA)/annotations/instances_test.json: | venv
	$(PY) -m segcore data synth --out $(DATA)

run: venv data
	$(PY) -m streamlit run dashboard/app.py --server.port=$(PORT) --server.headless=true \
		--browser.gatherUsageStats=false

test: venv
	$(PY) -m pytest -q

bench: venv data
	$(PY) bench/train_throughput.py

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache
