# shardcache: `make` lists the targets; `make test` is what CI runs (.ci/run).

GO       ?= go
BIN      := bin/shardcache
FUZZTIME ?= 30s
# ARGS are extra flags for `make run`, e.g. make run ARGS='--default-partitions 3'.
ARGS     ?=
# BENCH_ARGS are flags for the benchmark program.
BENCH_ARGS ?=
# SOAK_DURATION is how long `make soak` repeats each cluster fault test's fault
# cycle (a Go duration); SOAK_TIMEOUT bounds the whole run.
SOAK_DURATION ?= 5m
SOAK_TIMEOUT  ?= 2h
# The cluster fault tests that `make soak` repeats.
SOAK_TESTS := TestCluster(KillLeader|PauseLeader|PartitionLeaderMinority|AsymmetricPartition|IdempotentProducerLeaderKill|RollingRestart)$$
# The tests that calibrate the broker's memory accounting against what the Go
# runtime allocates; the race detector changes allocations, so under -race they
# skip (or skip their allocation checks), and `make test` runs them once more
# without it.
ALLOC_TESTS := Test(BatchMemoryCoversProduce|WalkBodyEstimateCoversKmsg|ParseRequestBoundsDecodedSize|DecompressBoundedStopsAtLimit)$$

.DEFAULT_GOAL := help
.PHONY: help build run cluster deps test test-unit test-integration soak bench bench-lookup bench-groups bench-cluster bench-hostile bench-security bench-compare bench-txn bench-writepath bench-all fuzz lint api-table api-table-readme clean

help: ## list the targets
	@echo "Targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/shardcache
	$(GO) build -o $(BIN) ./cmd/shardcache

run: build ## build, then run one node with the defaults (data in ./data; ARGS= adds flags)
	./$(BIN) $(ARGS)

cluster: ## build, then run three local nodes in the foreground (scripts/cluster.sh; data in ./data/node-N; Ctrl-C stops them)
	bash scripts/cluster.sh $(ARGS)

deps: ## install test dependencies: kcat, Python clients, Maven dependencies (scripts/deps.sh)
	bash scripts/deps.sh

test: deps ## what CI runs: deps, go vet, every test with -race, then the allocation calibration tests without it
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 25m ./...
	$(GO) test -count=1 -timeout 5m -run '$(ALLOC_TESTS)' ./broker/

test-unit: ## every package's tests except integration/
	$(GO) test -timeout 10m $$($(GO) list ./... | grep -v '/integration')

test-integration: deps ## black-box tests with real clients (integration/)
	$(GO) test -count=1 -timeout 25m ./integration/...

soak: ## the cluster fault tests, each repeating its fault for SOAK_DURATION (5m); not part of make test
	SHARDCACHE_SOAK_DURATION=$(SOAK_DURATION) $(GO) test -race -count=1 -timeout $(SOAK_TIMEOUT) -run '$(SOAK_TESTS)' ./integration/

bench: build ## produce and full-read benchmark (integration/bench; BENCH_ARGS= adds flags)
	$(GO) run ./integration/bench $(BENCH_ARGS)

bench-lookup: build ## HTTP key lookup latency at 1, 8 and 64 clients (integration/bench/lookup)
	$(GO) run ./integration/bench/lookup $(BENCH_ARGS)

bench-groups: build ## consumer group rebalance time and OffsetCommit throughput (integration/bench/groups)
	$(GO) run ./integration/bench/groups $(BENCH_ARGS)

bench-cluster: build ## 3 nodes beside 1: produce rate, leader failover, wiped-node rebuild, 10,000 partitions (integration/bench/cluster)
	$(GO) run ./integration/bench/cluster $(BENCH_ARGS)

bench-hostile: build ## hostile load for 30 s (bombs, 16 MiB array frames, slowloris): the broker's peak RSS (integration/bench/hostile)
	$(GO) run ./integration/bench/hostile $(BENCH_ARGS)

bench-security: build ## client security cost on one broker: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL (SCRAM) produce, fetch and connection setup, interleaved rounds, medians (integration/bench/security)
	$(GO) run ./integration/bench/security $(BENCH_ARGS)

bench-txn: build ## transactional produce at 1, 10 and 100 commits/s per producer beside non-transactional, commit latency p50/p99 (integration/bench/txn)
	$(GO) run ./integration/bench/txn $(BENCH_ARGS)

bench-compare: build ## Apache Kafka (KRaft, jars from Maven Central, cached) beside shardcache: same workloads, 3 interleaved rounds, medians and ratios (integration/bench/compare)
	$(GO) run ./integration/bench/compare $(BENCH_ARGS)

bench-writepath: build ## one node's CPU and bytes written per record, Pebble WAL/flush/compaction bytes; -baseline-binary runs a second binary beside it (integration/bench/writepath)
	$(GO) run ./integration/bench/writepath $(BENCH_ARGS)

bench-all: bench bench-lookup bench-groups bench-cluster bench-hostile bench-security bench-txn ## every benchmark, one after the other

fuzz: ## run every Fuzz target in the module for FUZZTIME (30s) each
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
		pkg=./$$(dirname $$f); \
		for fn in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "== $$pkg $$fn"; \
			$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

lint: ## gofmt -l (fails on any listed file) and go vet
	@files="$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*'))"; \
	if [ -n "$$files" ]; then echo "gofmt needed:"; echo "$$files"; exit 1; fi
	$(GO) vet ./...

api-table: ## print the Supported Kafka APIs table from the broker's registry
	@$(GO) run ./internal/tools/apitable

api-table-readme: ## regenerate that table inside README.md
	$(GO) run ./internal/tools/apitable -update README.md

clean: ## remove build output (bin/); ./data is left alone
	rm -rf bin
