# chute: the two commands a new machine needs are `make demo` and `make test`.
# Each does its own set-up: packages (apt-get, as root), the SeaweedFS test
# server (built once into .cache/bin), and keys.

GO        ?= go
BIN       := bin/chute
WEED      := .cache/bin/weed
# Tests that need a resource (root, /dev/fuse, a tool) fail instead of
# skipping under CHUTE_TEST_STRICT=1.
TESTFLAGS ?= -race -timeout 30m

.PHONY: all build test test-short bench bench-wan demo deps weed fmt vet clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/chute

deps:
	scripts/deps.sh

weed: $(WEED)

$(WEED):
	scripts/build-weed.sh $(CURDIR)/$(WEED)

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }

# Everything, as CI runs it: unit tests, simulated networks, real FUSE
# mounts, a real S3 server, real packets through the link emulator.
test: deps weed vet build
	CHUTE_TEST_STRICT=1 CHUTE_WEED=$(CURDIR)/$(WEED) $(GO) test $(TESTFLAGS) ./...

# Quick: no set-up; tests whose resources are missing skip, loudly.
test-short:
	$(GO) test -short ./...

# Benchmarks: figures go to bench/results/ (never asserted).
bench: deps weed build
	scripts/bench.sh

# The WAN grid through the link emulator (long: tens of minutes).
bench-wan: deps weed build
	scripts/bench-wan.sh

# A local transfer node with its folder store, a bucket, files copied in and
# read back, over the real protocol on loopback.
demo: deps build
	scripts/demo.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin bench/out
