# quantum_flow: one entry point for setting up, installing, testing and benchmarking.
#
#   make demo    install what is missing, build and install, run the demo on a throwaway cluster
#   make test    the same setup, then every test tier
#   make install build and install into the PostgreSQL of PG_CONFIG (default: PostgreSQL 15)
#   make bench   the benchmark harness, on a throwaway cluster of its own

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
export PG_CONFIG

# Runs a command with the throwaway cluster up, and stops it afterwards whatever happens.
with_cluster = scripts/cluster.sh start && trap 'scripts/cluster.sh stop' EXIT && eval "$$(scripts/cluster.sh env)" &&

.PHONY: setup install demo test test-unit test-regress test-isolation test-e2e test-clients bench cluster-stop clean-cluster

setup:
	scripts/setup.sh

install: setup
	scripts/install.sh

demo: install
	$(with_cluster) scripts/demo.sh

test: install
	scripts/test-unit.sh
	$(with_cluster) \
	  scripts/banner.sh "pg_regress" && scripts/test-regress.sh && \
	  scripts/banner.sh "isolation" && scripts/test-isolation.sh && \
	  scripts/banner.sh "end-to-end" && scripts/test-e2e.sh && \
	  { [ ! -x scripts/test-clients.sh ] || { scripts/banner.sh "clients" && scripts/test-clients.sh; }; } && \
	  scripts/banner.sh "all test tiers passed"

test-unit:
	scripts/test-unit.sh

test-regress test-isolation test-e2e test-clients:
	$(with_cluster) scripts/$@.sh

bench: setup
	scripts/bench.sh

cluster-stop:
	scripts/cluster.sh stop

clean-cluster: cluster-stop
	rm -rf .qf
