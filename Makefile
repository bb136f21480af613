# Top-level entry points. See README.md.
#   make deps   install the Debian packages the build and the tests need
#   make build  build everything into ./build
#   make test   all tests (unit, sanitizers, fuzz smoke, integration)
#   make bench  benchmarks; prints figures with their conditions
#   make run    capture on a default interface with a local config in ./run
#   make run-fleet  stenofleet in front of that sensor (after make run, in another shell)
#   make install  install on this machine (install/install.sh)
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
FUZZ_SECONDS ?= 60

DEB_PACKAGES := build-essential pkg-config clang libclang-rt-14-dev \
  libleveldb-dev libsnappy-dev libaio-dev liburing-dev libseccomp-dev libpcap-dev libgtest-dev \
  tcpdump tcpreplay tshark iproute2 openssl jq curl ethtool libcap2-bin \
  python3-grpc-tools strace shellcheck chromium time

.PHONY: deps build test bench run run-fleet install unit asan fuzz-smoke gofuzz gotest vet clean
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v $(GO) >/dev/null || { echo "Go toolchain not found (expected /usr/local/go/bin/go)"; exit 1; }

# Go binaries answer --version with these (stenographer/version).
GIT_VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
GO_LDFLAGS := -X github.com/stenographer-ng/stenographer/stenographer/version.Version=$(GIT_VERSION) \
  -X github.com/stenographer-ng/stenographer/stenographer/version.Commit=$(GIT_COMMIT)

build: deps
	$(MAKE) -C stenotype -j2 all test-bins
	$(GO) build -ldflags '$(GO_LDFLAGS)' -o build/bin/ ./cmd/...

unit: build
	build/bin/stenotype_test

# The sanitizer builds: the unit tests run here; build/asan/stenotype is
# run by tests/capture's TestSanitizers (import and live capture).
asan: deps
	$(MAKE) -C stenotype -j2 asan
	ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=1 UBSAN_OPTIONS=print_stacktrace=1 build/asan/stenotype_test

fuzz-smoke: deps
	$(MAKE) -C stenotype fuzz
	tests/fuzz_smoke.sh $(FUZZ_SECONDS)

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { gofmt -l .; echo "gofmt needed"; exit 1; }

gotest: build
	$(GO) test -race -count=1 -timeout 15m ./stenographer/... ./cmd/...
	$(GO) test -count=1 -timeout 15m ./tests/...

# Go fuzz targets, briefly: the query parser, the packet-file reader and
# the index-file reader.
GOFUZZ_SECONDS ?= 15
gofuzz:
	tests/gofuzz.sh $(GOFUZZ_SECONDS) FuzzParse ./stenographer/query
	tests/gofuzz.sh $(GOFUZZ_SECONDS) FuzzParse ./stenographer/frame
	tests/gofuzz.sh $(GOFUZZ_SECONDS) FuzzScan ./stenographer/blockfile
	tests/gofuzz.sh $(GOFUZZ_SECONDS) FuzzTable ./stenographer/indexfile

# asan builds build/asan/stenotype before gotest runs TestSanitizers, which
# must then not skip.
test: export STENO_REQUIRE_ASAN := 1
test: export STENO_REQUIRE_CHROMIUM := 1
test: export STENO_ARTIFACTS := $(CURDIR)/build/test-artifacts
test: build unit asan fuzz-smoke gofuzz vet gotest

bench: build
	tests/bench/run.sh
	tests/bench/capture.sh
	tests/bench/query.sh
	tests/bench/filecount.sh
	tests/bench/daemon.sh
	tests/bench/fleet.sh
	tests/bench/fresh.sh
	tests/bench/contention.sh

run: build
	scripts/run_local.sh $(IFACE)

# stenofleet in front of the `make run` sensor, config and certificates in
# ./run/fleet; prints the page's URL, a password and a curl command.
run-fleet: build
	scripts/run_fleet.sh

# Install on this machine (as root): binaries, scripts, config, certs, units.
# install/install.sh --help for what it does; START=1 also starts the service.
install: build
	install/install.sh --no-deps --no-build $(if $(START),--start)

clean:
	rm -rf build
