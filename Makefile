# The two commands a fresh Debian/Ubuntu machine needs: `make up` and `make test`.
# Everything else is a convenience. The shell lives in scripts/.

SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help up down status test lint bench datastores certs logs clean-dev

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

up: ## install what is missing, build (release), make dev certs, start Postgres, Redis, auth, records, web, edge
	@scripts/stack.sh up

down: ## stop everything `make up` started (by PID files)
	@scripts/stack.sh down

status: ## show what is running
	@scripts/stack.sh status

test: ## install what is missing, start Postgres+Redis, then fmt, clippy and every test
	@scripts/test.sh

lint: ## cargo fmt --check and clippy -D warnings only
	@scripts/test.sh lint

bench: ## the perf suite (QUICK=1 for a < 5 min run, PGO=1 adds the profile-guided build); see perf/README.md
	@perf/run.sh $(if $(QUICK),--quick,) $(if $(PGO),--pgo,)

datastores: ## start only PostgreSQL and Redis
	@scripts/datastores.sh up

certs: ## (re)create the dev CA and leaf if missing
	@scripts/stack.sh certs

logs: ## tail the stack's logs
	@tail -n 20 -F .dev/logs/*.log

clean-dev: down ## stop the stack and delete .dev (data, certs, keys)
	@scripts/datastores.sh down
	@rm -rf .dev
