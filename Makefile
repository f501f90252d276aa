# The two commands of the README: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA := data/shapes
PORT ?= 8501
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test data venv bench clean chromium zoo screenshots hardening

venv: $(VENV)/.installed

# rebuilt whenever requirements.txt or pyproject.toml changes; torch and torchvision come from the wheels on
# local disk; segcore itself is installed editable, which gives the `segcore` command
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

data: $(DATA)/annotations/instances_test.json

# the generator writes the whole folder atomically, so the last split's file marks a complete dataset
$(DATA)/annotations/instances_test.json: | venv
	$(PY) -m segcore data synth --out $(DATA)

# the shipped zoo was trained on data/shapes as generated here; say so if it differs (the dashboard still opens)
run: venv data
	-$(PY) -m segcore zoo check --data $(DATA)
	$(PY) -m streamlit run dashboard/app.py --server.port=$(PORT) --server.headless=true \
		--browser.gatherUsageStats=false

test: venv chromium
	$(PY) -m ruff check .
	$(PY) -m pytest -q

# The real-browser test drives Debian's chromium through Playwright (no browser download); apt installs it once.
chromium: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

bench: venv data
	$(PY) bench/train_throughput.py
	$(PY) bench/eval_speed.py
	$(PY) bench/dashboard_speed.py

# the demo zoo: about 8 hours on 2 CPU cores, model by model; run it again to go on where it stopped
zoo: venv data
	$(PY) -m segcore zoo build

# the README's screenshots of each page over the shipped zoo, in Debian's chromium
screenshots: venv data chromium
	$(PY) docs/screenshots.py

# the README's hardening table: every test marked hardening run once and counted by case
hardening: venv chromium
	$(PY) docs/hardening.py --readme README.md

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache
