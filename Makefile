# Herald. `make run` starts a local three-node cluster; `make test` runs the tests.
GO      ?= go
BIN     := bin/herald
TOOLS   := $(CURDIR)/.bin
PKGS    := ./...
# The two longest test packages first (each mostly waits on clusters of
# its own), so that the short ones run beside them rather than after.
TESTPKGS := ./server/ ./client/ ./...

.PHONY: build run test test-short bench fuzz proto lint jepsen jepsen-careful clean

build:
	$(GO) build -o $(BIN) ./cmd/herald

# A local three-node cluster on 127.0.0.1:7701-7703 (HTTP 7801-7803), data in ./data.
run: build
	./$(BIN) dev --nodes 3 --data ./data

# The whole suite, race detector on. CI runs exactly this (.ci/run). The
# binary is built once and every package that runs `herald` processes
# (server, jepsen, bench, cmd/herald) takes it from HERALD_BIN instead of
# building its own (server/proccluster).
test: build
	$(GO) vet $(PKGS)
	HERALD_BIN=$(CURDIR)/$(BIN) $(GO) test -race -count=1 -timeout 20m $(TESTPKGS)
	$(MAKE) fuzz

# Every fuzz target for FUZZTIME each, one after another (plain `go test`
# runs only their seeds). A crash fails the run and leaves the input under
# the package's testdata/fuzz/FuzzX/: fix the decoder and commit the input
# as a seed (docs/operations.md, "Fuzz targets").
# A count of inputs, not a duration: with a duration Go 1.26's fuzz
# coordinator can fail a target with "context deadline exceeded" when its
# time runs out on a loaded machine, with no failing input
# (golang/go#75804, fixed in Go 1.27; it failed FuzzDecodeCommand in a
# `make test` here). 3,000 inputs take 1-15 s per target on 2 cores.
FUZZTIME ?= 3000x
FUZZ_TARGETS := \
	./log/:FuzzParseRecordValue ./log/:FuzzDecodeChunk ./log/:FuzzDecodeGroupValue ./log/:FuzzRestore \
	./partition/:FuzzDecodeCommand \
	./server/controller/:FuzzDecodeEntry ./server/controller/:FuzzRestore \
	./raft/:FuzzConvert \
	./server/:FuzzProduceRequest ./server/:FuzzSubscribeRequest ./server/:FuzzGroupConsumeRequest ./server/:FuzzWSFrame
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

test-short: build
	HERALD_BIN=$(CURDIR)/$(BIN) $(GO) test -short -count=1 $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./log/ ./partition/ ./raft/

# Regenerates the protobuf code (committed; the build never needs this).
# buf and the protoc plugins come through the Go module proxy.
proto:
	GOBIN=$(TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@v1.75.0
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
	PATH=$(TOOLS):$$PATH $(TOOLS)/buf generate

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1)
	$(GO) vet $(PKGS)

# The fault-injection suite at volume: every nemesis for 10 minutes, batched
# producers near the cluster's peak, nodes that snapshot and compact often
# (see docs/fault-injection.md). jepsen-careful is the one-event-a-Send
# workload whose every operation is also checked linearizable.
JEPSEN_NEMESES := kill,pause,partition,slow,transfer,corrupt,membership,restart
jepsen: build
	./$(BIN) jepsen --mode volume --nodes 3 --duration 10m --nemesis $(JEPSEN_NEMESES) --out ./jepsen-out

jepsen-careful: build
	./$(BIN) jepsen --mode careful --nodes 3 --duration 5m --nemesis $(JEPSEN_NEMESES) --out ./jepsen-out

clean:
	rm -rf bin data jepsen-out
