# Causeway. `make dev` runs the quickstart locally; `make test` runs every test.
SHELL := /bin/bash
CARGO ?= cargo
export CAUSEWAY_CACHE ?= $(HOME)/.cache/causeway

.PHONY: registry jaeger nats dev test unit e2e e2e-up e2e-down image bench crds crds-check plugins lint deps-check toolchain fuzz

## dev: build the example plugins and run examples/quickstart on 127.0.0.1:8080 (Ctrl-C stops)
dev: plugins
	$(CARGO) run --release --bin causeway -- up -f examples/quickstart

## test: every test: format and lints, CRD drift, unit and integration, then the e2e suite
test: plugins registry jaeger nats crds-check lint unit e2e

# A real OCI registry on loopback for the plugin host's OCI tests (unpacked, not installed).
registry:
	runtime/plugins/tests/registry.sh

# A real OTLP receiver (Jaeger all-in-one, built from its Go module once into the cache)
# for the traces test (cli/tests/traces.rs).
jaeger:
	scripts/jaeger.sh

# Debian's nats-server for the NATS JetStream destination tests (started by the tests).
nats:
	scripts/nats.sh install

unit:
	$(CARGO) test --workspace --exclude causeway-e2e --no-fail-fast

## crds: regenerate crds/yaml/ and charts/causeway/crds/ from the Rust types
crds:
	$(CARGO) run --quiet -p causeway-crds --bin crdgen

crds-check:
	$(CARGO) run --quiet -p causeway-crds --bin crdgen -- --check

## plugins: build the guest plugins in examples/plugins into examples/plugins/dist/
plugins:
	examples/plugins/build.sh

## e2e: the end-to-end suite on a local control plane (starts and stops it unless already up)
e2e: plugins
	e2e/run.sh

## e2e-up: start the local e2e stack (control plane, node, the chart); e2e-down stops it
e2e-up:
	e2e/up.sh

e2e-down:
	e2e/controlplane/down.sh

## image: the image (Containerfile) with buildah from release binaries; IMAGE_TAG (dev), IMAGE_PUSH=host:port
image:
	$(CARGO) build --release --bin causeway --bin causeway-operator
	scripts/node.sh install
	e2e/node/image.sh --bin-dir $${CARGO_TARGET_DIR:-target}/release --tag $${IMAGE_TAG:-dev} --no-pause $${IMAGE_PUSH:+--push $$IMAGE_PUSH}

bench:
	examples/plugins/build.sh --rust-only
	bench/setup.sh
	$(CARGO) build --release -p causeway --bin causeway
	$(CARGO) build --release -p causeway-bench
	$${CARGO_TARGET_DIR:-target}/release/bench run --out BENCHMARKS.md

## lint: rustfmt (default settings), clippy with warnings as errors, and deps-check
lint: deps-check
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## deps-check: the data plane (runtime, pipeline, plugins) builds without kube, k8s-openapi
## or schemars; only the `causeway` binary, the CRD crate and the operator bring them in
DATA_PLANE := causeway-runtime causeway-pipeline causeway-plugins
deps-check:
	@for p in $(DATA_PLANE); do \
	  tree=$$($(CARGO) tree --quiet -p $$p -e normal,build --prefix none) || exit 1; \
	  bad=$$(grep -E '^(kube|k8s-openapi|schemars)' <<<"$$tree" | sort -u); \
	  if [ -n "$$bad" ]; then \
	    echo "$$bad"; echo "deps-check: $$p depends on the crates above; see docs/architecture.md"; exit 1; \
	  fi; \
	done; echo "deps-check: $(DATA_PLANE) free of kube, k8s-openapi and schemars"

## fuzz: run every fuzz target at once for FUZZ_SECONDS each (default 60); crashing inputs go to fuzz/crashes/
fuzz:
	$(CARGO) run -p causeway-fuzz --bin fuzz -- --seconds $${FUZZ_SECONDS:-60}
