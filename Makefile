# samepage.ksm developer entry points. Every stage lives in tools/ci.sh; see docs/development.md.
# Environments are cached outside the clone: SAMEPAGE_CACHE (default /var/cache/samepage-ksm).

SHELL := /bin/bash
CI := bash tools/ci.sh

.PHONY: test bootstrap changelog build docs docs-site installed importer ee units lint sanity integration system lab-test demo lab-down env lock release help bench

## test       every suite (the one test command; .ci/run runs it)
test:
	@$(CI) all

## bootstrap  build or reuse the pinned environments (controllers, target Pythons, get-pip stand-in)
bootstrap:
	@$(CI) bootstrap

## changelog  antsibull-changelog lint
changelog:
	@$(CI) changelog

## build      ansible-galaxy collection build + install, ansible-doc of every module and role
build docs:
	@$(CI) build

## docs-site  the docs site (antsibull-docs + Sphinx) built offline, warnings fail; SAMEPAGE_KEEP_DOCS=DIR keeps it
docs-site:
	@$(CI) docs-site

## installed  the built tarball installed: nothing developer-only in it, playbooks by name, ansible-test units + the sanity tests that can differ on it
installed:
	@$(CI) installed

## importer   galaxy-importer (flake8 on) on the built tarball, no warning
importer:
	@$(CI) importer

## ee         ansible-builder introspect + create for the collection (no image build)
ee:
	@$(CI) ee

## units      pytest tests/unit and tests/tools (both controllers; module_utils tests also on Python 3.8 and 3.9)
units:
	@$(CI) units

## lint       ansible-lint --profile production
lint:
	@$(CI) lint

## sanity     ansible-test sanity, every test, no ignore file (ansible-core 2.21 and 2.19)
sanity:
	@$(CI) sanity

## integration ansible-test integration (tests/integration) against this machine's real KSM, under the host lock
integration:
	@$(CI) integration

## system     pytest tests/system against this machine's real /sys/kernel/mm/ksm (2.21; every_controller tests also 2.19)
system:
	@$(CI) system

## lab-test   pytest tests/lab against QEMU guests
lab-test:
	@$(CI) lab

## demo       site.yml against the embedded QEMU lab (python3 lab/labctl.py demo)
demo:
	@$(CI) demo

## lab-down   stop every guest of the lab
lab-down:
	@python3 lab/labctl.py down

## env        show where the environments and work copies live
env:
	@$(CI) env

## lock       re-resolve tests/requirements/*.txt from the pins in tests/requirements/*.in
lock:
	@$(CI) lock

## release    make release VERSION=x.y.z: changelog release, version in galaxy.yml, CHANGELOG.md, tarball (docs/development.md)
release:
	@$(CI) release $(VERSION)

## bench      benchmarks (bench/README.md; not part of test): make bench [BENCH=host|lab|NAME] [BENCH_REPS=3]
bench:
	@python3 bench/run.py $(BENCH)

## help       this list
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)
