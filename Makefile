# Overseer — the two commands of the quick start are `make demo` and `make test`.
SWIFT ?= swift
SWIFT_FLAGS ?=

.PHONY: setup build demo test torture-ci bench clean

setup:
	@scripts/setup.sh

build: setup
	$(SWIFT) build $(SWIFT_FLAGS)

## Runs the seed's diamond pipeline end to end in a temporary store.
demo: setup
	$(SWIFT) build $(SWIFT_FLAGS) --product overseer
	$$($(SWIFT) build $(SWIFT_FLAGS) --show-bin-path)/overseer demo

## Builds everything (no warnings allowed) and runs the whole test suite.
test:
	@scripts/setup.sh --extras
	$(SWIFT) build $(SWIFT_FLAGS) --build-tests -Xswiftc -warnings-as-errors
	$(SWIFT) test $(SWIFT_FLAGS) --skip-build
	$(MAKE) torture-ci

## A short torture (docs/reliability.md): fixed seeds, worker processes killed, paused past their
## lease, operator retries and aborts, new runs, and (as root) a full disk; then the independent
## checker. About 3 minutes on 2 cores, after the release build.
TORTURE_SEEDS ?= 101 102 103
TORTURE_DISK_FULL_SEED ?= 104
torture-ci: setup
	$(SWIFT) build $(SWIFT_FLAGS) -c release --product overseer-torture
	@bin="$$($(SWIFT) build $(SWIFT_FLAGS) -c release --show-bin-path)/overseer-torture"; \
	for seed in $(TORTURE_SEEDS); do \
		"$$bin" --seed $$seed --minutes 0.5 || exit 1; \
	done; \
	if [ "$$(id -u)" = 0 ]; then \
		"$$bin" --seed $(TORTURE_DISK_FULL_SEED) --minutes 0.75 --disk-full; rc=$$?; \
		if [ $$rc = 77 ]; then echo "torture-ci: cannot mount a tmpfs here; disk-full scenario skipped"; \
		elif [ $$rc != 0 ]; then exit $$rc; fi; \
	else \
		echo "torture-ci: not root; disk-full scenario skipped"; \
	fi

bench: setup
	$(SWIFT) run -c release overseer-bench all

clean:
	rm -rf .build
