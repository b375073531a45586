# Overseer — the two commands of the quick start are `make demo` and `make test`.
SWIFT ?= swift
SWIFT_FLAGS ?=

.PHONY: setup build demo test bench clean

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

bench: setup
	$(SWIFT) run -c release overseer-bench all

clean:
	rm -rf .build
