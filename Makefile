# slipway.django: controller set-up, demo and tests.
# Every target installs what it needs itself (as root on Debian 12).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR ?= 0
export PY_COLORS ?= 0
COLLECTION_LINK := .cache/collections/ansible_collections/slipway/django
# `default` (the first deploy) is checked inside `update`, which starts with the same deploy.
# Longest first: MOLECULE_JOBS lanes (3 by default) take them in this order as they come free.
# `update` and `debian13` run on Debian 13 hosts, the others on Debian 12. `update` and
# `restore` are the two halves of one story (v1 -> v2 -> rollback -> failing v3; v1 -> an
# irreversible v4 -> restores -> failing v5), split so that they run side by side. `acme` runs
# the nginx role alone against a local ACME CA (Pebble). `apps` deploys a FastAPI + Alembic app on
# MariaDB with an npm front end (app_framework python); it comes first so that a lane finds out early.
MOLECULE_SCENARIOS ?= apps update restore mysql multihost realdjango console debian13 acme

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q -e .
	touch $@

$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../../.. $@

.PHONY: venv
venv: $(VENV)/.installed $(COLLECTION_LINK) ## Create .venv/ with the pinned controller tools

.PHONY: host
host: ## Install podman, runc, debootstrap and the test databases; configure podman
	bash tests/testbed/setup-host.sh

# About a minute each when missing (debootstrap); then reused until the recipe changes.
.PHONY: image
image: host ## Build (or reuse) the local Debian 12 systemd base image
	bash tests/testbed/build-image.sh bookworm >/dev/null

.PHONY: image13
image13: host ## Build (or reuse) the local Debian 13 systemd base image
	bash tests/testbed/build-image.sh trixie >/dev/null

# The demo host's Debian release: trixie (Debian 13) by default, or `make demo DEMO_RELEASE=bookworm`.
DEMO_RELEASE ?= trixie
DEMO_IMAGE = $(or $(if $(filter trixie,$(DEMO_RELEASE)),image13),$(if $(filter bookworm,$(DEMO_RELEASE)),image),\
  $(error DEMO_RELEASE must be trixie or bookworm, not "$(DEMO_RELEASE)"))

.PHONY: demo
demo: venv $(DEMO_IMAGE) ## Start the demo host (Debian 13; DEMO_RELEASE=bookworm: 12) and deploy the example app
	DEMO_RELEASE=$(DEMO_RELEASE) bash tests/testbed/demo.sh

.PHONY: demo-destroy
demo-destroy: ## Remove the demo container
	-podman rm -f -t 5 slipway-demo

# antsibull-changelog lint: the fragments. lint-collection-docs: every plugin's and role's
# documentation (schema, markup, the pages it renders to) and the references of the plugins and
# guides to this collection, ansible.builtin and the collections galaxy.yml depends on, any
# other collection refused ('all' would load the ansible package's hundred collections: ten
# minutes). ansible-builder create: the example execution environment's definition (the build
# context only, no image).
.PHONY: lint
lint: venv ## ansible-lint, yamllint, ruff, pip-audit, sanity, changelog, docs, EE definition, galaxy-check
	yamllint -s .
	ansible-lint --offline --profile production
	ruff check .
	pip-audit --no-deps --disable-pip --progress-spinner off -r roles/console/files/requirements.txt
	bash tests/sanity.sh
	antsibull-changelog lint
	antsibull-docs lint-collection-docs --plugin-docs --check-extra-docs-refs \
	  --validate-collection-refs dependent --disallow-unknown-collection-refs .
	rm -rf .cache/ee
	ansible-builder create -f examples/execution-environment/execution-environment.yml -c .cache/ee
	bash tests/galaxy_install.sh
	ansible-galaxy collection build --force --output-path .cache/dist

.PHONY: galaxy-check
galaxy-check: venv ## Install the built tarball with only ansible-core and its dependencies; ansible-doc, syntax checks
	bash tests/galaxy_install.sh

# Sanity and unit tests on every ansible-core version meta/runtime.yml claims (one venv each),
# and the migrations module on each Django version. Not part of `make test`: each row costs as
# much as make lint's sanity run or the migrations part of make integration (see the README).
# 5 to 7 minutes (about 2 to build the EE, 3 to 4 for the deploy from it): not part of `make test`.
.PHONY: ee
ee: venv image ## Build the example execution environment locally and deploy the example app from it
	bash tests/testbed/ee.sh

.PHONY: core-matrix
core-matrix: venv ## ansible-test sanity and the unit tests on ansible-core 2.19, 2.20 and 2.21
	bash tests/testbed/core-matrix.sh

.PHONY: core-molecule
core-molecule: venv host image13 ## The debian13 scenario on the newest ansible-core claimed (2.21, Python 3.13)
	bash tests/testbed/core-molecule.sh

.PHONY: django-matrix
django-matrix: venv host ## The migrations module's integration tests on Django 4.2, 5.2 and 6.0
	bash tests/testbed/django-matrix.sh

.PHONY: unit
unit: venv ## Unit tests of the plugins
	pytest -q tests/unit

.PHONY: integration
integration: venv host image ## Integration tests: real PostgreSQL and MariaDB servers, nginx and uvicorn in a container
	pytest -q tests/integration

.PHONY: molecule
molecule: venv image image13 ## Molecule scenarios on podman systemd hosts
	bash tests/testbed/run-molecule.sh $(MOLECULE_SCENARIOS)

.PHONY: console
console: venv host ## Deploy console: API, runs, cancel, restart and browser (chromium) tests
	pytest -q tests/console

# The documentation site in .cache/docs/html: antsibull-docs renders every module, plugin and
# role of this checkout (--use-current: collections_path in ansible.cfg) and the guides of
# docs/docsite/ into .cache/docs/rst, beside docs/site/index.rst; Sphinx builds it with
# docs/site/conf.py, warnings as errors (-W). The one exception is in conf.py's nitpick_ignore:
# labels of docs.ansible.com that the generated pages name (common_return_values...). They need
# intersphinx, which fetches docs.ansible.com's inventory: the build is offline and uses none.
DOCS := .cache/docs
.PHONY: docs
docs: venv ## The documentation site (antsibull-docs, Sphinx) in .cache/docs/html
	rm -rf $(DOCS)
	mkdir -p -m 0755 $(DOCS)/rst
	cp docs/site/index.rst $(DOCS)/rst/
	antsibull-docs collection --use-current --fail-on-error --dest-dir $(DOCS)/rst slipway.django
	sphinx-build -b html -W --keep-going -q -c docs/site -d $(DOCS)/doctrees $(DOCS)/rst $(DOCS)/html

# The molecule lanes spend much of their time waiting on their hosts: lint, the unit, integration
# and console tests run beside them, and molecule's output follows theirs.
.PHONY: test
test: venv host image image13 ## The whole test suite (what CI runs)
	@mkdir -p .cache; rc=0; \
	bash tests/testbed/run-molecule.sh $(MOLECULE_SCENARIOS) > .cache/molecule.out 2>&1 & molecule=$$!; \
	$(MAKE) --no-print-directory lint || rc=1; \
	pytest -q tests/unit || rc=1; \
	pytest -q tests/integration || rc=1; \
	pytest -q tests/console || rc=1; \
	$(MAKE) --no-print-directory docs || rc=1; \
	pytest -q tests/docs || rc=1; \
	wait $$molecule || rc=1; \
	cat .cache/molecule.out; \
	exit $$rc

.PHONY: build
build: venv ## Build the collection tarball
	ansible-galaxy collection build --force --output-path .cache/dist
