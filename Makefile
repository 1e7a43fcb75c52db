# Herald. `make run` starts a local three-node cluster; `make test` runs the tests.
GO      ?= go
BIN     := bin/herald
TOOLS   := $(CURDIR)/.bin
PKGS    := ./...

.PHONY: build run test test-short bench proto lint jepsen clean

build:
	$(GO) build -o $(BIN) ./cmd/herald

# A local three-node cluster on 127.0.0.1:7701-7703 (HTTP 7801-7803), data in ./data.
run: build
	./$(BIN) dev --nodes 3 --data ./data

# The whole suite, race detector on. CI runs exactly this (.ci/run).
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

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

# A longer fault-injection schedule than the one the tests run (see docs/fault-injection.md).
jepsen: build
	./$(BIN) jepsen --nodes 3 --duration 5m --nemesis kill,pause,partition,slow,transfer,corrupt,membership,restart --out ./jepsen-out

clean:
	rm -rf bin data jepsen-out
