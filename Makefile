# testum — see README.md. `make run` starts testum; `make test` checks everything.
SHELL := /bin/bash
GO      ?= go
GOBIN   := $(shell $(GO) env GOPATH)/bin
SQLC    := $(GOBIN)/sqlc
OAPI_CODEGEN := $(GOBIN)/oapi-codegen
MINIO   := $(GOBIN)/minio
NATS_SERVER := $(GOBIN)/nats-server
GOLANGCI_LINT := $(GOBIN)/golangci-lint
SQLC_VERSION  := v1.31.1
OAPI_CODEGEN_VERSION := v2.8.2
GOLANGCI_LINT_VERSION := v2.15.0
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c # what @latest resolved to on 2026-12-01 (MinIO tags are not semver)
# The cluster tests run real nats-server processes of the version testum embeds (go.mod's).
NATS_SERVER_VERSION := $(shell $(GO) list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2 2>/dev/null)
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Debian packages the tests drive for real: OpenSSH, PostgreSQL, Chromium.
TEST_PACKAGES := openssh-server openssh-client postgresql chromium chromium-driver procps iproute2 sudo systemd
APT := $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: all build run test web web-check deps deps-apt deps-go generate check-generated vet lint bench bench-deps soak clean help

all: build

help:
	@echo "make run    build and start testum serve with its defaults (http://127.0.0.1:8000)"
	@echo "make test   install what is missing (apt-get, go install), check generated code, vet, lint, unit-test the console, test -race"
	@echo "make lint   golangci-lint with .golangci.yml (formatting, errcheck, staticcheck, import layering)"
	@echo "make build  build bin/testum"
	@echo "make bench  measure fan-out, streaming, latency and memory against pdsh, pssh, clush, ansible"
	@echo "make soak   a small run every 2 s for SOAK (30m), WebSockets coming and going: RSS, heap, goroutines"

build: web
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/testum ./services/testum

run: build
	./bin/testum serve

# web builds the console (TypeScript, Vite) into services/gateway/web/dist/app,
# which the gateway embeds. npm ci runs when package-lock.json changed, the
# build when a source changed; otherwise both are skipped.
WEB     := services/gateway/web
WEB_OUT := $(WEB)/dist/app/index.html
WEB_SRC := $(shell find $(WEB)/src -type f 2>/dev/null) $(addprefix $(WEB)/,index.html vite.config.ts tsconfig.json package.json)

# Without npm the binary is built without the console (it says so at /);
# the API works, and the console's browser tests fail rather than skip.
web:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(WEB_OUT); \
	else echo "warning: npm not found: building without the web console (it needs Node.js 20 and npm)" >&2; fi

$(WEB)/node_modules/.package-lock.json: $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund

$(WEB_OUT): $(WEB)/node_modules/.package-lock.json $(WEB_SRC)
	cd $(WEB) && npm run build

# web-check lints the console (eslint) and runs its unit tests (vitest).
# Unlike the build, it fails without npm: make test checks the console too.
web-check:
	@command -v npm >/dev/null 2>&1 || { echo "error: npm not found: the console's lint and unit tests need Node.js 20 and npm" >&2; exit 1; }
	@$(MAKE) --no-print-directory $(WEB)/node_modules/.package-lock.json
	cd $(WEB) && npm run --silent lint && npm test --silent -- --run

# deps installs what the tests need and the machine lacks. The Go tools build
# while apt works (they need the CPU, apt the network).
deps:
	@set -e; \
	( $(MAKE) --no-print-directory deps-go > /tmp/testum-deps-go.log 2>&1; echo $$? > /tmp/testum-deps-go.rc ) & \
	$(MAKE) --no-print-directory deps-apt; \
	wait; cat /tmp/testum-deps-go.log; exit $$(cat /tmp/testum-deps-go.rc)

deps-apt:
	@missing=""; for p in $(TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends $$missing; fi

deps-go:
	@test "$$($(SQLC) version 2>/dev/null)" = "$(SQLC_VERSION)" || { echo "building sqlc $(SQLC_VERSION)"; $(GO) install github.com/sqlc-dev/sqlc/cmd/sqlc@$(SQLC_VERSION); }
	@$(OAPI_CODEGEN) -version 2>/dev/null | grep -qx '$(OAPI_CODEGEN_VERSION)' || { echo "building oapi-codegen $(OAPI_CODEGEN_VERSION)"; $(GO) install github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@$(OAPI_CODEGEN_VERSION); }
	@$(NATS_SERVER) --version 2>/dev/null | grep -qx 'nats-server: $(NATS_SERVER_VERSION)' || { echo "building nats-server $(NATS_SERVER_VERSION)"; $(GO) install github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION); }
	@test -x $(MINIO) || { echo "building minio"; $(GO) install github.com/minio/minio@$(MINIO_VERSION); }
	@$(GOLANGCI_LINT) version 2>/dev/null | grep -q "has version $(GOLANGCI_LINT_VERSION:v%=%) " || \
	  { echo "building golangci-lint $(GOLANGCI_LINT_VERSION)"; $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION); }

# The Go client and types of the HTTP API come from libs/api/openapi.yaml;
# the console's TypeScript types too, when npm is there.
API_CLIENT := libs/api/client
generate:
	$(SQLC) generate
	cd $(API_CLIENT) && $(OAPI_CODEGEN) -config oapi-codegen.yaml ../openapi.yaml
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(WEB)/node_modules/.package-lock.json && cd $(WEB) && npm run --silent gen:api; fi

# The generated code is committed; regeneration must not change it.
check-generated:
	$(SQLC) diff
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  sed 's|^output: .*|output: '"$$tmp"'/api.gen.go|' $(API_CLIENT)/oapi-codegen.yaml > $$tmp/cfg.yaml && \
	  (cd $(API_CLIENT) && $(OAPI_CODEGEN) -config $$tmp/cfg.yaml ../openapi.yaml) && \
	  diff -u $(API_CLIENT)/api.gen.go $$tmp/api.gen.go || { echo "$(API_CLIENT)/api.gen.go is stale: run make generate" >&2; exit 1; }
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(WEB)/node_modules/.package-lock.json && cd $(WEB) && npm run --silent gen:api:check; fi

vet:
	$(GO) vet ./...

# lint runs the linters and formatters of .golangci.yml, including the
# depguard rules that keep the layering of STYLE.md.
lint: deps-go
	$(GOLANGCI_LINT) run ./...

test: deps web web-check check-generated vet lint
	PATH="$(GOBIN):$$PATH" $(GO) test -race -count=1 -timeout 40m ./...

# bench measures testum against a Go floor, pdsh, parallel-ssh, clush and
# ansible on one loopback sshd and writes docs/benchmarks.md and
# docs/benchmarks.png (short: N = 10 and 100, one run each, ansible at
# N = 10 only, scale-out on 256 hosts; meant to take 3 minutes). FULL=1 runs N = 10, 100, 500 and 1000 (3 runs at N <= 100, 1
# above; hosts lost per tool; the handshake window at N = 1000), 1000
# executor sessions and 500 hosts for scale-out, within 30 minutes.
# BENCH_ARGS passes flags such as -bench.reps=3, -bench.sizes=10,100,500,
# -bench.ansible-max=500 or -bench.profile=DIR.
BENCH_PACKAGES := pdsh pssh clustershell ansible-core openssh-client
bench-deps:
	@missing=""; for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends $$missing; fi
	@for t in pdsh parallel-ssh clush ansible ssh; do command -v $$t >/dev/null || { echo "bench: $$t not found after install"; exit 1; }; done

# BENCH=scaleout runs only the slot-bound scale-out workload.
BENCH_RUN = $(if $(filter scaleout,$(BENCH)),TestBenchScaleout,TestBench)

bench: deps bench-deps
	PATH="$(GOBIN):$$PATH" $(GO) test -tags bench -run '$(BENCH_RUN)' -count=1 -timeout 120m -v ./services/testum/ \
		-args -bench.short=$(if $(FULL),false,true) -bench.out=$(CURDIR)/docs/benchmarks.md $(BENCH_ARGS)

# soak starts a small run every 2 s for SOAK (default 30m) against an
# in-process serve, with WebSocket clients joining and leaving, and writes
# RSS, Go heap and goroutines at its start, middle and end into the Soak
# section of docs/benchmarks.md. SOAK_ARGS passes flags such as
# -soak.profile=DIR (heap profiles of the three samples).
SOAK ?= 30m
SOAK_TIMEOUT ?= 3h
soak: deps
	PATH="$(GOBIN):$$PATH" $(GO) test -tags bench -run TestSoak -count=1 -timeout $(SOAK_TIMEOUT) -v ./services/testum/ \
		-args -soak.duration=$(SOAK) -bench.out=$(CURDIR)/docs/benchmarks.md $(SOAK_ARGS)

clean:
	rm -rf bin
