# wpfarm: see README.md. Every target installs what it needs.
SHELL := /bin/bash
NODE  := node --import tsx
# Playbooks through the fast CLI (scripts/build-cli.ts, bench/README.md): rebuilt when a source is newer; the
# launcher itself runs the sources through tsx when anything changed since, or when the build is missing.
CLI_SOURCES := $(shell find lib roles playbooks -name '*.ts' 2>/dev/null) bench/workload.ts scripts/build-cli.ts tsconfig.json package.json
RUN    = node $$(test -f .wpfarm/cli/wpfarm.mjs && echo .wpfarm/cli/wpfarm.mjs || echo --import tsx)
INVENTORY ?=
export CI

.PHONY: images golden-image lint setup setup-test bootstrap test test-all test-fast test-unit test-contract test-engine test-lab bench lab-up lab-down lab-status role add-site typecheck

# What the lab and bootstrap need (setup), and with the test tiers' own packages (setup-test).
setup:
	@bash scripts/setup.sh

setup-test:
	@bash scripts/setup.sh --test

node_modules/.package-lock.json: package.json
	@if [ -L node_modules ]; then echo "node_modules links to $$(readlink node_modules): not reinstalled here"; \
	else npm ci --no-audit --no-fund || npm install --no-audit --no-fund; fi

# Site images (files/images: wordpress-fpm, nginx, redis, varnish) with content-hashed tags: built only when their
# content changed, pushed when IMAGES_REGISTRY is set; prints the pinned references as JSON (progress on stderr).
# The same function (ensureSiteImages, roles/wp-site/images.ts) builds them in the images role (phase 3 of bootstrap,
# what the lab uses; add-site never builds) and in CI (.github/workflows/images.yml runs this target). Lab: IMAGES_BASE=wpfarm/base:bookworm IMAGES_REGISTRY=127.0.0.1:5077
IMAGES_BASE ?= debian:bookworm-slim
IMAGES_REGISTRY ?=
images: node_modules/.package-lock.json
	$(NODE) roles/wp-site/images.ts --base $(IMAGES_BASE) $(if $(IMAGES_REGISTRY),--registry $(IMAGES_REGISTRY)) --json

typecheck: node_modules/.package-lock.json
	npx tsc --noEmit

# Biome's linter (biome.json): errors fail the build; warnings are printed.
lint: node_modules/.package-lock.json
	npx biome lint --diagnostic-level=error

# Quick tier: pure code, no root services (seconds).
test-unit: node_modules/.package-lock.json
	$(NODE) --test --test-reporter=spec test/unit/*.test.ts

# Contract tier: Prism on the providers' OpenAPI specs, JSON schemas, promtool.
test-contract: node_modules/.package-lock.json
	$(NODE) --test --test-concurrency=1 --test-reporter=spec test/contract/*.test.ts

# Engine tier: real OpenSSH sshd hosts in network namespaces.
test-engine: node_modules/.package-lock.json
	$(NODE) --test --test-concurrency=1 --test-reporter=spec test/engine/*.test.ts

# The test tiers run on a lab of their own (WPFARM_LAB=test, scripts/lab/config.ts: containers wpfarm-testlab-*,
# network wpfarm-testlab on 10.78.0.0/24, state and inventory in .wpfarm/test-lab), beside the user's lab
# (make lab-up / bootstrap: wpfarm-lab-*, 10.77.0.0/24, inventory/lab.yml), which they never read or change.
test test-fast test-unit test-contract test-engine test-lab: export WPFARM_LAB = test

# Lab tier: the docker "VM" test lab, cluster roles and faults (sequential; brings the test lab up, tears it down).
test-lab: setup-test
	$(NODE) --test --test-concurrency=1 --test-reporter=spec test/lab/*.test.ts

# What CI runs (.ci/run): every tier, the lab included (it builds the test lab, converges the farm, proves the roles
# and their faults, and takes the test lab down leaving the machine as it was; a user's lab beside it is untouched).
# The unit tier's timed file first, then unit + contract + engine side by side with the lab tier (scripts/test-tiers.ts:
# each stream's lines prefixed [fast] / [lab]); WPFARM_TEST_SERIAL=1 runs the tiers one after the other.
test: setup-test typecheck lint
	$(NODE) scripts/test-tiers.ts

# Everything but the lab (about 10 minutes): unit, contract, engine.
test-fast: setup-test typecheck lint
	$(NODE) --test --test-concurrency=1 --test-timeout=1800000 --test-reporter=spec test/unit/*.test.ts test/contract/*.test.ts test/engine/*.test.ts

test-all: test

.wpfarm/cli/current.json: $(CLI_SOURCES) node_modules/.package-lock.json
	@$(NODE) scripts/build-cli.ts --quiet || echo 'build-cli failed: playbooks run through tsx'

bench: setup-test
	$(NODE) bench/run.ts

# The golden node image (playbooks/image.ts, docs/lab.md): the lab's, or with INVENTORY=FILE the DigitalOcean snapshot.
golden-image: setup
	$(NODE) playbooks/image.ts $(if $(INVENTORY),--inventory $(INVENTORY),--lab)

lab-up: setup
	$(NODE) scripts/lab.ts up

lab-down: node_modules/.package-lock.json
	$(NODE) scripts/lab.ts down

lab-status: node_modules/.package-lock.json
	$(NODE) scripts/lab.ts status

# The playbook through the fast CLI (built here when a source changed: a few seconds, once).
bootstrap: setup .wpfarm/cli/current.json
ifeq ($(INVENTORY),)
	$(NODE) scripts/lab.ts up
	$(RUN) playbooks/bootstrap.ts --inventory inventory/lab.yml
else
	$(RUN) playbooks/bootstrap.ts --inventory $(INVENTORY)
endif

# make role ROLE=traefik LIMIT=mgr1
role: node_modules/.package-lock.json .wpfarm/cli/current.json
	$(RUN) playbooks/run-role.ts $(ROLE) $(if $(INVENTORY),--inventory $(INVENTORY)) $(if $(LIMIT),--limit $(LIMIT)) $(ARGS)

# make add-site DOMAIN=example.com
add-site: node_modules/.package-lock.json .wpfarm/cli/current.json
	$(RUN) playbooks/add-site.ts --domain $(DOMAIN) $(if $(INVENTORY),--inventory $(INVENTORY)) $(ARGS)
