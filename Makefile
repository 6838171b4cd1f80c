# quantum_flow: one entry point for setting up, installing, testing and benchmarking.
#
#   make setup          install what is missing: Debian packages, cargo-pgrx 0.18.0, pgrx init,
#                       pgmq's extension files (scripts/setup.sh; about a second when all is there)
#   make install        setup, then build quantum_flow (release) and install it into the
#                       PostgreSQL of PG_CONFIG (default: the system PostgreSQL 15)
#   make demo           install, then the demo on the throwaway cluster, watched by the web
#                       dashboard (its address is printed; dashboard/)
#   make test           install, then every test tier on the throwaway cluster (scripts/test.sh)
#   make test-unit | test-regress | test-isolation | test-privileges | test-e2e |
#        test-clients | test-dashboard | test-upgrade | test-ops | test-package |
#        test-pg18      one tier
#                       (test-pg18: regress, isolation and e2e on a private PostgreSQL 18,
#                       scripts/test-pg18.sh)
#   make package        setup, then the .deb files of quantum_flow and pgmq in target/package/
#                       (scripts/package.sh; apt install ./target/package/*.deb)
#   make bench          the benchmark harness, on a throwaway cluster of its own (scripts/bench.sh);
#                       options go in ARGS, e.g. make bench ARGS="--duration 60"
#   make cluster-start | cluster-stop | cluster-status           the throwaway cluster by hand;
#                       eval "$(scripts/cluster.sh env)" points psql at it
#   make clean-cluster  stop the throwaway clusters and delete their state (.qf)
#
# The throwaway cluster (scripts/cluster.sh) keeps its data in .qf/ between runs; the targets
# drop and recreate their own databases. It is stopped after demo/test, even on failure.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
export PG_CONFIG

TIERS := unit regress isolation privileges e2e clients dashboard upgrade ops package pg18

.PHONY: help setup install demo test $(addprefix test-,$(TIERS)) bench package \
	cluster-start cluster-stop cluster-status clean-cluster

help:
	@sed -n '1,/^$$/s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

setup:
	scripts/setup.sh

install: setup
	scripts/install.sh

demo: install
	scripts/with-cluster.sh scripts/demo.sh

test: install
	scripts/test.sh

test-unit:
	scripts/test.sh unit

# Builds and installs for its own private PostgreSQL 18 (scripts/pg18.sh), not the system's.
test-pg18: setup
	scripts/test.sh pg18

test-regress test-isolation test-privileges test-e2e test-clients test-dashboard test-upgrade test-ops test-package: install
	scripts/test.sh $(patsubst test-%,%,$@)

package: setup
	scripts/package.sh

bench: setup
	scripts/bench.sh $(ARGS)

cluster-start:
	scripts/cluster.sh start

cluster-stop:
	scripts/cluster.sh stop

cluster-status:
	scripts/cluster.sh status

clean-cluster:
	QF_STATE_DIR="$(CURDIR)/.qf/bench" scripts/cluster.sh clean
	scripts/cluster.sh clean
