# Overseer — the two commands of the quick start are `make demo` and `make test`.
SWIFT ?= swift
SWIFT_FLAGS ?=

.PHONY: setup build demo test torture-ci bench clean pg-server pg-stop

setup:
	@scripts/setup.sh

build: setup
	$(SWIFT) build $(SWIFT_FLAGS)

## Runs the seed's diamond pipeline end to end in a temporary store.
demo: setup
	$(SWIFT) build $(SWIFT_FLAGS) --product overseer
	$$($(SWIFT) build $(SWIFT_FLAGS) --show-bin-path)/overseer demo

## Builds everything (no warnings allowed) and runs the whole test suite, with a throwaway
## PostgreSQL server for the PostgreSQL tests (scripts/with-pg-server.sh, docs/postgres.md).
test:
	@scripts/setup.sh --extras --postgres
	$(SWIFT) build $(SWIFT_FLAGS) --build-tests -Xswiftc -warnings-as-errors
	@# PostgresTests after the rest: their servers and processes would otherwise crowd 2 cores.
	scripts/with-pg-server.sh sh -c '$(SWIFT) test $(SWIFT_FLAGS) --skip-build --skip PostgresTests && $(SWIFT) test $(SWIFT_FLAGS) --skip-build --filter PostgresTests'
	$(MAKE) torture-ci

## A short torture (docs/reliability.md): fixed seeds, worker processes killed, paused past their
## lease, operator retries and aborts, new runs, and (as root) a full disk; one seed over
## PostgreSQL; then the independent checker. About 4 minutes on 2 cores, after the release build.
TORTURE_SEEDS ?= 101 102 103
TORTURE_DISK_FULL_SEED ?= 104
# The same scenario over PostgreSQL, on a throwaway server.
TORTURE_PG_SEED ?= 105
torture-ci:
	@scripts/setup.sh --postgres
	$(SWIFT) build $(SWIFT_FLAGS) -c release --product overseer-torture
	@bin="$$($(SWIFT) build $(SWIFT_FLAGS) -c release --show-bin-path)/overseer-torture"; \
	for seed in $(TORTURE_SEEDS); do \
		"$$bin" --seed $$seed --minutes 0.5 || exit 1; \
	done; \
	scripts/with-pg-server.sh sh -c '"$$0" --seed $(TORTURE_PG_SEED) --minutes 0.5 --store "$$OVERSEER_TEST_POSTGRES"' "$$bin" || exit 1; \
	if [ "$$(id -u)" = 0 ]; then \
		"$$bin" --seed $(TORTURE_DISK_FULL_SEED) --minutes 0.75 --disk-full; rc=$$?; \
		if [ $$rc = 77 ]; then echo "torture-ci: cannot mount a tmpfs here; disk-full scenario skipped"; \
		elif [ $$rc != 0 ]; then exit $$rc; fi; \
	else \
		echo "torture-ci: not root; disk-full scenario skipped"; \
	fi

bench: setup
	$(SWIFT) run -c release overseer-bench all

## A PostgreSQL server to develop against (make pg-server; eval the export it prints; make pg-stop).
PG_DIR ?= /tmp/overseer-pg-dev
PG_PORT ?= 55432
pg-server:
	@scripts/setup.sh --postgres
	@url="$$(scripts/pg-test-server.sh start $(PG_DIR) $(PG_PORT))" && \
		echo "export OVERSEER_TEST_POSTGRES='$$url' OVERSEER_TEST_PG_DIR='$(PG_DIR)'"

pg-stop:
	@scripts/pg-test-server.sh destroy $(PG_DIR)

clean:
	rm -rf .build
