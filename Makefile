# deskbooks developer commands. `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: demo test test-fast bench lint clean

$(STAMP): pyproject.toml
	@# Tesseract is the optional second OCR engine (Debian package); RapidOCR comes from pip.
	@command -v tesseract >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& apt-get install -y -qq tesseract-ocr tesseract-ocr-eng >/dev/null 2>&1; } \
		|| echo "note: tesseract not installed; its OCR tests will be skipped"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## Seed the demo space into the default SQLite database and print its summary.
demo: $(STAMP)
	ORT_DISABLE_TELEMETRY=1 $(BIN)/deskbooks demo --reset $(ARGS)

## The whole suite, on SQLite and on PostgreSQL (DESKBOOKS_TEST_POSTGRES_URL, default $(PG_URL)).
test: $(STAMP)
	ORT_DISABLE_TELEMETRY=1 DESKBOOKS_TEST_POSTGRES_URL=$${DESKBOOKS_TEST_POSTGRES_URL:-$(PG_URL)} \
		$(BIN)/python -m pytest $(ARGS)

## SQLite only, skipping slow tests.
test-fast: $(STAMP)
	ORT_DISABLE_TELEMETRY=1 $(BIN)/python -m pytest -m "not postgres and not slow" $(ARGS)

## Benchmarks; results land in docs/benchmarks.md.
bench: $(STAMP)
	ORT_DISABLE_TELEMETRY=1 DESKBOOKS_TEST_POSTGRES_URL=$${DESKBOOKS_TEST_POSTGRES_URL:-$(PG_URL)} \
		$(BIN)/python -m benchmarks.run $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
