# samepage.ksm developer entry points. Every stage lives in tools/ci.sh; see README.md, "Development".
# Environments are cached outside the clone: SAMEPAGE_CACHE (default /var/cache/samepage-ksm).

SHELL := /bin/bash
CI := bash tools/ci.sh

.PHONY: test bootstrap changelog build docs units lint sanity system lab-test demo lab-down env lock help bench

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

## units      pytest tests/unit (both controllers; module_utils tests also on Python 3.8 and 3.9)
units:
	@$(CI) units

## lint       ansible-lint --profile production
lint:
	@$(CI) lint

## sanity     ansible-test sanity, every test, no ignore file (ansible-core 2.21 and 2.19)
sanity:
	@$(CI) sanity

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

## bench      benchmarks (bench/README.md; not part of test): make bench [BENCH=host|lab|NAME] [BENCH_REPS=3]
bench:
	@python3 bench/run.py $(BENCH)

## help       this list
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)
