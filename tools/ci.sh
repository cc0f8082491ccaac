#!/usr/bin/env bash
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# The stages of `make test` (the Makefile calls this script; see docs/development.md).
#
#   tools/ci.sh all          every stage below (the lab in the background from the start, the others in
#                            order); exit status 1 if any failed
#   tools/ci.sh bootstrap    controller virtual environments, target Pythons, get-pip stand-in
#   tools/ci.sh changelog    antsibull-changelog lint
#   tools/ci.sh build        ansible-galaxy collection build + install, ansible-doc of every module and role
#   tools/ci.sh units        pytest tests/unit under both controllers; module_utils tests on 3.8 and 3.9
#   tools/ci.sh lint         ansible-lint --profile production
#   tools/ci.sh docs-site    the docs site (antsibull-docs sphinx-init + Sphinx) built offline, no warnings
#   tools/ci.sh installed    the built tarball installed: nothing developer-only shipped, the collection playbooks
#                            found by name, ansible-test units and the sanity tests that can differ on the
#                            installed content
#   tools/ci.sh importer     galaxy-importer (flake8 on) on the built tarball: no error, no warning
#   tools/ci.sh ee           ansible-builder create for meta/execution-environment.yml, the context checked
#   tools/ci.sh sanity       ansible-test sanity (all tests, no ignore file) with ansible-core 2.21 and 2.19
#   tools/ci.sh integration  ansible-test integration (tests/integration) against this machine's real KSM,
#                            holding the host lock; every knob put back afterwards
#   tools/ci.sh system       pytest tests/system (the real /sys/kernel/mm/ksm): all under 2.21, every_controller under 2.19;
#                            installs Debian's chromium when missing (the fleet report is rendered by it)
#   tools/ci.sh lab          pytest tests/lab against one lab of QEMU guests (labctl run): the one-guest
#                            tests side by side (a pytest per guest), then the whole-lab ones
#   tools/ci.sh demo         python3 lab/labctl.py demo, with SAMEPAGE_VENV set to the 2.21 controller
#   tools/ci.sh env          print where everything lives
#   tools/ci.sh lock         re-resolve tests/requirements/*.txt from the top-level pins in *.in
#   tools/ci.sh release VERSION   cut a release: changelog, version in galaxy.yml, tarball (docs/development.md)
#
# Environment: SAMEPAGE_CACHE (default /var/cache/samepage-ksm), FAIL_FAST=1 (stop `all` at the first
# failing stage), SAMEPAGE_PY_A / SAMEPAGE_PY_B (pyenv versions of the two controllers),
# SAMEPAGE_SKIP_STAGES (space-separated stage names `all` leaves out).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
CACHE=${SAMEPAGE_CACHE:-/var/cache/samepage-ksm}
PYENV_ROOT=${PYENV_ROOT:-$HOME/.pyenv}
PY_A_VERSIONS=${SAMEPAGE_PY_A:-3.11.7}
PY_B_VERSIONS=${SAMEPAGE_PY_B:-3.12.1 3.13.0}
TARGET_MINORS="3.8 3.9 3.10 3.11 3.12 3.13"
OLD_TARGET_MINORS="3.8 3.9"         # extra runs of the pure-stdlib module_utils unit tests
REQ_DIR=$REPO/tests/requirements
VENV_FORMAT=1                       # bump to rebuild every environment
ALL_STAGES="changelog build docs-site installed importer ee units lint sanity integration system lab"
# pip's progress lines inside ansible-test's own environment setup (kept out of the log)
PIP_NOISE="^WARNING: Location '.*' is ignored|^ *(Collecting|Downloading|Processing|Installing collected|Attempting uninstall|Found existing installation|Uninstalling|Successfully uninstalled|Looking in|Requirement already)|━━"

export PIP_DISABLE_PIP_VERSION_CHECK=1 ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 PY_COLORS=0

say() { printf '%s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
header() { printf '\n==== %s ====\n' "$*"; }

# ---------------------------------------------------------------------------------------------------
# Cache and prerequisites

prepare_cache() {
    if ! mkdir -p "$CACHE" 2>/dev/null || [ ! -w "$CACHE" ]; then
        local fallback=${XDG_CACHE_HOME:-$HOME/.cache}/samepage-ksm
        warn "$CACHE is not writable; using $fallback (set SAMEPAGE_CACHE to choose)"
        CACHE=$fallback
        mkdir -p "$CACHE"
    fi
    mkdir -p "$CACHE/venv" "$CACHE/pythons" "$CACHE/locks"
}

# apt-get runs one at a time: the lab stage (lab/samepage_lab/hosttools.py, same lock file) may install QEMU meanwhile.
APT_LOCK=/var/lib/samepage-ksm-lab-apt.lock

apt_install() {
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing with apt-get: $*"
        (
            exec {apt_fd}>"$APT_LOCK"
            flock "$apt_fd"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
        )
    else
        die "missing: $* (install them, or run as root on Debian/Ubuntu so this script can)"
    fi
}

require_tools() {
    local missing=() tool
    for tool in git tar flock sha256sum; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        local packages=()
        for tool in "${missing[@]}"; do
            case $tool in
                flock) packages+=(util-linux) ;;
                sha256sum) packages+=(coreutils) ;;
                *) packages+=("$tool") ;;
            esac
        done
        apt_install "${packages[@]}"
    fi
    # ansible-test's shellcheck sanity test is skipped (with a warning) without it.
    if ! command -v shellcheck >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt_install shellcheck
        else
            warn "shellcheck is not installed: the shellcheck sanity test will be skipped"
        fi
    fi
}

# Path of a Python: a pyenv version ("3.12.1"), the newest pyenv build of a minor ("3.12"), or
# pythonX.Y on PATH. Prints nothing when there is none.
find_python() {
    local want=$1 minor candidate
    if [[ $want =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
        minor=${want%.*}
        candidate=$PYENV_ROOT/versions/$want/bin/python$minor
        [ -x "$candidate" ] && { echo "$candidate"; return; }
    else
        minor=$want
        local newest='' build
        for build in "$PYENV_ROOT"/versions/"$minor".*; do
            if [[ ${build##*/} =~ ^${minor//./\\.}\.[0-9]+$ ]] && [ -x "$build/bin/python$minor" ]; then
                newest=$(printf '%s\n%s\n' "$newest" "$build" | sort -V | tail -n 1)
            fi
        done
        [ -n "$newest" ] && { echo "$newest/bin/python$minor"; return; }
    fi
    candidate=$(PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v '/\.pyenv/shims$' | paste -sd:) command -v "python$minor" 2>/dev/null || true)
    [ -n "$candidate" ] && echo "$candidate"
    return 0
}

first_python() {
    local version found
    for version in "$@"; do
        found=$(find_python "$version")
        if [ -z "$found" ]; then
            found=$(find_python "${version%.*}")
            [ -n "$found" ] && warn "pyenv Python $version not found; using $found"
        fi
        [ -n "$found" ] && { echo "$found"; return; }
    done
    return 0
}

python_a() {
    local python
    local versions
    read -r -a versions <<<"$PY_A_VERSIONS"
    python=$(first_python "${versions[@]}")
    [ -n "$python" ] || die "no Python for controller A (ansible-core 2.19): looked for pyenv $PY_A_VERSIONS and python${PY_A_VERSIONS%.*} on PATH. Install one (pyenv install 3.11.7, or apt-get install python3) or set SAMEPAGE_PY_A."
    echo "$python"
}

python_b() {
    local python
    local versions
    read -r -a versions <<<"$PY_B_VERSIONS"
    python=$(first_python "${versions[@]}")
    if [ -z "$python" ]; then
        python=$(find_python 3.13); [ -n "$python" ] || python=$(find_python 3.12)
    fi
    [ -n "$python" ] || die "no Python 3.12+ for controller B (ansible-core 2.21 needs Python 3.12 or newer): looked for pyenv $PY_B_VERSIONS and python3.12/python3.13 on PATH. Install one (pyenv install 3.12.1) or set SAMEPAGE_PY_B."
    echo "$python"
}

# ---------------------------------------------------------------------------------------------------
# Virtual environments, keyed on the pinned requirements and the interpreter

ensure_venv() {  # name python requirements-file
    local name=$1 python=$2 requirements=$3 key dir
    key=$( { cat "$requirements"; "$python" -c 'import sys; print(sys.version)'; echo "$python $VENV_FORMAT"; } \
           | sha256sum | cut -c1-12)
    dir=$CACHE/venv/$name-$key
    if [ ! -f "$dir/.ready" ]; then
        say "creating $dir ($("$python" --version 2>&1), $(basename "$requirements"))"
        if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
            case $python in
                /usr/bin/*) apt_install "python$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv" ;;
                *) die "$python cannot create virtual environments (no ensurepip/venv)" ;;
            esac
        fi
        rm -rf "$dir"
        "$python" -m venv "$dir"
        if ! "$dir/bin/python" -m pip install --quiet --require-virtualenv -r "$requirements" 2>&1 \
                | { grep -v "^WARNING: Location '.*' is ignored" || true; }; then
            die "pip install -r $requirements into $dir failed"
        fi
        touch "$dir/.ready"
    fi
    ln -sfn "$name-$key" "$CACHE/venv/$name"
    local old
    for old in "$CACHE"/venv/"$name"-*; do
        [ "$old" = "$dir" ] || [ -L "$old" ] || [ ! -d "$old" ] || rm -rf "$old"
    done
}

venv_a() { echo "$CACHE/venv/controller-2.19"; }
ansible_version() { "$1/bin/python" -c 'from ansible.release import __version__; print("ansible-core " + __version__)'; }
venv_b() { echo "$CACHE/venv/controller-2.21"; }
venv_release() { echo "$CACHE/venv/release-tools"; }

# ansible-test bootstraps pip in its virtual environments with get-pip.py from a host that cannot be
# reached here; it uses ~/.ansible/test/cache/get_pip_<version>.py when present.
ensure_get_pip_standin() {
    local venv=$1 source version target
    source=''
    for target in "$venv"/lib/python3.*/site-packages/ansible_test/_internal/python_requirements.py; do
        if [ -f "$target" ]; then source=$target; fi
    done
    [ -n "$source" ] || die "ansible-test not found in $venv"
    mkdir -p "$HOME/.ansible/test/cache"
    sed -n '/def get_venv_packages/,/return packages/p' "$source" \
        | grep -oE "pip='[0-9][0-9.]*'" | grep -oE "[0-9][0-9.]*" | sort -u \
        | while read -r version; do
            target=$HOME/.ansible/test/cache/get_pip_${version//./_}.py
            if ! cmp -s "$REPO/tools/get_pip_standin.py" "$target"; then
                cp "$REPO/tools/get_pip_standin.py" "$target"
                say "get-pip stand-in for pip $version: $target"
            fi
        done
}

target_pythons() {
    local link names=()
    for link in "$CACHE"/pythons/python*; do
        if [ -e "$link" ]; then names+=("${link##*/}"); fi
    done
    echo "${names[*]}"
}

ensure_pythons_dir() {
    local minor python link
    for minor in $TARGET_MINORS; do
        python=$(find_python "$minor")
        link=$CACHE/pythons/python$minor
        if [ -n "$python" ]; then
            [ "$(readlink "$link" 2>/dev/null || true)" = "$python" ] || ln -sfn "$python" "$link"
        else
            rm -f "$link"
            warn "no Python $minor found: sanity skips it"
        fi
    done
}

stage_bootstrap() {
    prepare_cache
    require_tools
    local lock=$CACHE/locks/bootstrap.lock
    exec 8>"$lock"
    flock 8
    local python_a python_b minor python jobs=() job failed=0
    python_a=$(python_a)
    python_b=$(python_b)
    # The environments are independent: build them side by side (pip mostly waits on the network).
    ensure_venv controller-2.19 "$python_a" "$REQ_DIR/controller-2.19.txt" & jobs+=($!)
    ensure_venv controller-2.21 "$python_b" "$REQ_DIR/controller-2.21.txt" & jobs+=($!)
    # galaxy-importer, ansible-builder, Sphinx: apart from the controllers (the importer pins its own
    # ansible-lint and flake8)
    ensure_venv release-tools "$python_b" "$REQ_DIR/release-tools.txt" & jobs+=($!)
    for minor in $OLD_TARGET_MINORS; do
        python=$(find_python "$minor")
        if [ -n "$python" ]; then
            ensure_venv "target-py$minor" "$python" "$REQ_DIR/target-py38.txt" & jobs+=($!)
        else
            warn "no Python $minor: the module_utils unit tests will not run on it"
        fi
    done
    for job in "${jobs[@]}"; do
        wait "$job" || failed=1
    done
    [ $failed -eq 0 ] || die "could not build every environment (see above)"
    ensure_pythons_dir
    ensure_get_pip_standin "$(venv_a)"
    ensure_get_pip_standin "$(venv_b)"
    flock -u 8
    say "controller A: $(ansible_version "$(venv_a)") on $("$(venv_a)/bin/python" --version)"
    say "controller B: $(ansible_version "$(venv_b)") on $("$(venv_b)/bin/python" --version)"
    say "release tools: $("$(venv_release)/bin/python" --version), $(ansible_version "$(venv_release)")"
}

bootstrapped() {
    # Stages run on their own (make units, ...) make sure the environments exist first.
    prepare_cache
    if [ -z "${SAMEPAGE_BOOTSTRAPPED:-}" ]; then
        stage_bootstrap >/dev/null
        export SAMEPAGE_BOOTSTRAPPED=1
    fi
}

# ---------------------------------------------------------------------------------------------------
# A copy of the working tree laid out as .../ansible_collections/samepage/ksm

# ansible-test and ansible-lint need the physical path to end in ansible_collections/<ns>/<name>;
# the copy holds the tracked and untracked-but-not-ignored files, and keeps its tests/output
# between runs (ansible-test's work files).
stage_tree() {  # [suffix]: one copy per clone (and per suffix)
    local key
    key=$(printf '%s' "$REPO" | sha256sum | cut -c1-12)
    echo "$CACHE/tree/$key${1:-}"
}

sync_tree() {
    local root=$1 dest=$1/ansible_collections/samepage/ksm
    mkdir -p "$dest/tests"
    find "$dest" -mindepth 1 -maxdepth 1 ! -name tests -exec rm -rf {} +
    find "$dest/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} +
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' path; do [ -e "$path" ] || [ -L "$path" ] && printf '%s\0' "$path"; done \
        | tar --null -T - -cf -) | tar -xf - -C "$dest"
}

prune_trees() {  # copies made for clones that no longer exist
    local source_file source
    for source_file in "$CACHE"/tree/*/source; do
        [ -f "$source_file" ] || continue
        source=$(cat "$source_file")
        if [ ! -d "$source" ]; then
            say "removing the work copy of $source (gone): $(dirname "$source_file")"
            rm -rf "$(dirname "$source_file")" "$(dirname "$source_file").lock"
        fi
    done
}

with_tree_lock() {  # suffix command...: refresh the copy and run command... copy-root, holding its lock
    local suffix=$1 root
    shift
    prune_trees
    root=$(stage_tree "$suffix")
    mkdir -p "$root"
    printf '%s\n' "$REPO" > "$root/source"
    (
        exec {lock_fd}>"$root.lock"
        flock "$lock_fd"
        sync_tree "$root"
        "$@" "$root"
    )
}

# ---------------------------------------------------------------------------------------------------
# Stages

run_pytest() {  # venv label args...
    local venv=$1 label=$2
    shift 2
    say "-- pytest $* [$label: $("$venv/bin/python" --version), $(ansible_version "$venv" 2>/dev/null || echo 'no ansible')]"
    (cd "$REPO" && "$venv/bin/python" -m pytest -p no:cacheprovider "$@")
}

stage_changelog() {
    bootstrapped
    (cd "$REPO" && "$(venv_b)/bin/antsibull-changelog" lint -v)
    say "antsibull-changelog lint: OK"
}

build_and_doc() {
    local root=$1 dest=$1/ansible_collections/samepage/ksm work venv
    work=$(mktemp -d "$CACHE/build.XXXXXX")
    "$(venv_b)/bin/ansible-galaxy" collection build "$dest" --output-path "$work/dist" --force
    local tarball
    tarball=$(ls "$work"/dist/samepage-ksm-*.tar.gz)
    ANSIBLE_COLLECTIONS_PATH=$work/collections \
        "$(venv_b)/bin/ansible-galaxy" collection install "$tarball" -p "$work/collections" --force
    local modules=() roles=() name failed=0
    for name in "$work"/collections/ansible_collections/samepage/ksm/plugins/modules/*.py; do
        [ -e "$name" ] || continue
        name=$(basename "$name" .py)
        [ "$name" = "__init__" ] || modules+=("samepage.ksm.$name")
    done
    for name in "$work"/collections/ansible_collections/samepage/ksm/roles/*/; do
        [ -d "$name" ] || continue
        roles+=("samepage.ksm.$(basename "$name")")
    done
    say "installed $(basename "$tarball"): ${#modules[@]} module(s), ${#roles[@]} role(s)"
    for venv in "$(venv_b)" "$(venv_a)"; do
        for name in "${modules[@]}"; do
            doc_check "$venv" "$work" module "$name" || failed=1
        done
        for name in "${roles[@]}"; do
            doc_check "$venv" "$work" role "$name" || failed=1
        done
    done
    rm -rf "$work"
    say "-- antsibull-docs lint-collection-docs --plugin-docs (markup, references, role argument specs)"
    if (cd "$dest" && PATH="$(venv_b)/bin:$PATH" ANSIBLE_COLLECTIONS_PATH=$root \
            "$(venv_b)/bin/antsibull-docs" lint-collection-docs --plugin-docs --skip-rstcheck .); then
        say "ok: antsibull-docs lint-collection-docs"
    else
        say "FAILED: antsibull-docs lint-collection-docs"
        failed=1
    fi
    return $failed
}

doc_check() {  # venv work type name
    local venv=$1 work=$2 type=$3 name=$4 output rc=0
    output=$(cd "$work" && ANSIBLE_COLLECTIONS_PATH=$work/collections "$venv/bin/ansible-doc" -t "$type" "$name" 2>&1) || rc=$?
    # ansible-core 2.21's ansible-doc -t role warns about its own internal collection: not ours.
    output=$(grep -v "ansible_collections/ansible/_protomatter' does not have a MANIFEST.json" <<<"$output" || true)
    if [ $rc -ne 0 ] || grep -qE '^\[?(ERROR|WARNING)' <<<"$output"; then
        printf '%s\n' "$output" | grep -E 'ERROR|WARNING' -A5 >&2 || true
        say "FAILED: ansible-doc -t $type $name ($(ansible_version "$venv"))"
        return 1
    fi
    say "ok: ansible-doc -t $type $name ($(printf '%s\n' "$output" | wc -l) lines, $(ansible_version "$venv"))"
}

stage_build() {
    bootstrapped
    with_tree_lock "" build_and_doc
}

stage_units() {
    bootstrapped
    local failed=0 minor
    # tests/tools: the developers' tools (tools/ci.sh, lab/), not shipped, so apart from tests/unit
    run_pytest "$(venv_a)" "controller A" tests/unit tests/tools || failed=1
    run_pytest "$(venv_b)" "controller B" tests/unit tests/tools || failed=1
    if [ -d "$REPO/tests/unit/plugins/module_utils" ]; then
        for minor in $OLD_TARGET_MINORS; do
            [ -e "$CACHE/venv/target-py$minor" ] || continue
            run_pytest "$CACHE/venv/target-py$minor" "target Python $minor" tests/unit/plugins/module_utils \
                || failed=1
        done
    fi
    return $failed
}

lint_tree() {
    local dest=$1/ansible_collections/samepage/ksm
    (cd "$dest" && ANSIBLE_COLLECTIONS_PATH=$1 PATH="$(venv_b)/bin:$PATH" \
        "$(venv_b)/bin/ansible-lint" --profile production --offline --exclude tests/output)
}

stage_lint() {
    bootstrapped
    with_tree_lock "" lint_tree
}

sanity_one() {  # venv copy-root
    local venv=$1 dest=$2/ansible_collections/samepage/ksm version
    version=$(ansible_version "$venv")
    (
        # ansible-test builds its environments in ~/.ansible/test/venv without locking: one run per
        # ansible-core version at a time on this machine (any clone).
        exec {lock_fd}>"$CACHE/locks/${version// /-}.lock"
        flock "$lock_fd"
        say "-- ansible-test sanity, $version, Pythons: $(target_pythons)"
        (cd "$dest" && PATH="$CACHE/pythons:$PATH" "$venv/bin/ansible-test" sanity --venv --color no --truncate 0) 2>&1 \
            | { grep --line-buffered -vE "$PIP_NOISE" || true; }
    )
}

stage_sanity() {
    bootstrapped
    local log rc_a=0 rc_b=0 pid
    # The two ansible-core versions run side by side (separate copies and environments): ansible-core
    # 2.21 reports as it goes, 2.19 is shown when both are done.
    log=$(mktemp "$CACHE/sanity-2.19.XXXXXX")
    with_tree_lock -2.19 sanity_one "$(venv_a)" >"$log" 2>&1 &
    pid=$!
    with_tree_lock "" sanity_one "$(venv_b)" || rc_b=$?
    wait "$pid" || rc_a=$?
    cat "$log"
    rm -f "$log"
    say "ansible-test sanity: ansible-core 2.21 $([ $rc_b -eq 0 ] && echo OK || echo FAILED), 2.19 $([ $rc_a -eq 0 ] && echo OK || echo FAILED)"
    [ $rc_a -eq 0 ] && [ $rc_b -eq 0 ]
}

# tests/system/test_report.py looks at the fleet report as a person would: rendered by headless Chromium
# (Debian's chromium package). Only the system stage needs it.
require_chromium() {
    command -v chromium >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt_install chromium
    else
        warn "chromium is not installed: the fleet report's rendering test will be skipped"
    fi
}

stage_system() {
    bootstrapped
    require_chromium
    local failed=0
    # Every test under the newest ansible-core; under the older one, the tests marked every_controller
    # (what the controller's ansible-core decides: argument parsing, check and diff results, playbooks).
    # The modules themselves run the same code on the target either way.
    run_pytest "$(venv_b)" "controller B" tests/system --durations=5 || failed=1
    run_pytest "$(venv_a)" "controller A" tests/system -m every_controller --durations=5 || failed=1
    return $failed
}

# One lab for the whole stage: `labctl run` boots it once, runs the suites against it and stops it
# whatever happens (its guests also end if labctl is killed). The tests that use one guest run side by
# side, a pytest per guest (tests/lab/conftest.py marks them one_guest(group=...)); then the tests that
# use several guests at once (marked whole_lab: roles, site.yml, reboots), one at a time.
LAB_GROUPS="debian12 debian13 numa"   # the groups of tests/lab/conftest.py GUEST_FIXTURES

stage_lab() {
    prepare_cache
    if [ -n "${SAMEPAGE_SKIP_LAB:-}" ]; then
        bootstrapped
        run_pytest "$(venv_b)" "controller B" tests/lab
        return
    fi
    # The lab's images are built and its guests booted before the environments are needed: lab-suites
    # makes sure of them (waiting for a bootstrap that runs meanwhile, as in `all`).
    local root=${TMPDIR:-/tmp}/samepage-ksm-lab-tests state rc=0
    mkdir -p "$root"
    state=$(mktemp -d "$root/ci-XXXXXX")   # tests/lab/conftest.py stops it if its labctl has died
    SAMEPAGE_VENV=$(venv_b) python3 "$REPO/lab/labctl.py" --state "$state" run --no-host-merge -- \
        bash "${BASH_SOURCE[0]}" lab-suites || rc=$?
    rm -rf "$state"
    return $rc
}

stage_lab_suites() {  # run by `labctl run`: SAMEPAGE_LAB_REUSE names the lab that is up
    [ -n "${SAMEPAGE_LAB_REUSE:-}" ] || die "lab-suites runs inside labctl run (use: tools/ci.sh lab)"
    bootstrapped
    local failed=0 group rc i=0
    # Globals: the EXIT trap needs them after this function has returned.
    LAB_LOGS=$(mktemp -d "$CACHE/lab-logs.XXXXXX")
    LAB_PIDS=()
    # Stopped from outside (labctl passes SIGTERM on): end the pytests of this stage too.
    trap 'for pid in "${LAB_PIDS[@]}"; do pkill -TERM -P "$pid"; kill "$pid"; done 2>/dev/null; rm -rf "$LAB_LOGS"' EXIT
    trap 'exit 143' TERM INT HUP
    say "-- one pytest per guest, side by side: $LAB_GROUPS (output follows when all have ended)"
    for group in $LAB_GROUPS; do
        run_pytest "$(venv_b)" "controller B, guest group $group" tests/lab -m "one_guest(group='$group')" \
            --durations=5 >"$LAB_LOGS/$group.log" 2>&1 &
        LAB_PIDS+=($!)
    done
    for group in $LAB_GROUPS; do
        rc=0
        wait "${LAB_PIDS[$i]}" || rc=$?
        i=$((i + 1))
        cat "$LAB_LOGS/$group.log"
        [ $rc -eq 0 ] || { say "FAILED: lab tests of guest group $group (rc $rc)"; failed=1; }
    done
    LAB_PIDS=()
    rc=0
    run_pytest "$(venv_b)" "controller B" tests/lab -m whole_lab --durations=10 || rc=$?
    [ $rc -eq 0 ] || failed=1
    return $failed
}

# ---------------------------------------------------------------------------------------------------
# Release checks: the collection as its users and the ecosystem's tools get it (the built tarball)

COLLECTION_DIR=ansible_collections/samepage/ksm
# What build_ignore must keep out of the tarball: developers' tools that users cannot run.
# (tests/support ships four_steps.py only: the unit tests use it.)
DEVELOPER_ONLY="Makefile pytest.ini tools lab bench .ci tests/lab tests/system tests/tools tests/requirements
tests/support/ansible_cli.py tests/support/callback_plugins tests/support/ksm_host.py tests/support/merge_workload.py
tests/support/host_packages.py tests/support/libvirt_daemon.py"

build_tarball_of() {  # output-dir copy-root: ansible-galaxy collection build of the work copy
    "$(venv_b)/bin/ansible-galaxy" collection build "$2/$COLLECTION_DIR" --output-path "$1" --force >/dev/null
}

with_work_dir() {  # name function: function work-dir in a new $CACHE/name.XXXXXX, removed afterwards; its status
    local work rc=0
    work=$(mktemp -d "$CACHE/$1.XXXXXX")
    "$2" "$work" || rc=$?
    rm -rf "$work"
    return $rc
}

built_tarball() {  # work-dir: builds the working tree's tarball into work-dir/dist, prints its path
    mkdir -p "$1/dist"
    # A copy of its own: the integration and sanity stages hold the main copy for minutes.
    with_tree_lock -release build_tarball_of "$1/dist" >&2
    ls "$1"/dist/samepage-ksm-*.tar.gz
}

# ansible-test keeps the environments of its sanity tests in ~/.ansible/test/venv, shared by every clone
# and created without a lock: one sanity run per ansible-core version at a time (as sanity_one does).
# `--venv` itself, units and integration use environments inside the collection's tests/output.
with_ansible_test_lock() {  # venv command...
    local version
    version=$(ansible_version "$1")
    shift
    (
        exec {lock_fd}>"$CACHE/locks/${version// /-}.lock"
        flock "$lock_fd"
        "$@"
    )
}

docs_site_build() {  # work-dir
    local work=$1 tarball site failed=0
    tarball=$(built_tarball "$work")
    ANSIBLE_COLLECTIONS_PATH=$work/collections \
        "$(venv_b)/bin/ansible-galaxy" collection install "$tarball" -p "$work/collections" >/dev/null
    site=$work/site
    mkdir -m 700 "$site"
    PATH="$(venv_release)/bin:$PATH"
    export ANSIBLE_COLLECTIONS_PATH=$work/collections PATH
    # Only the installed collection (and ansible.builtin) is documented: --use-current reads
    # ANSIBLE_COLLECTIONS_PATH, nothing is downloaded.
    (cd "$site" && antsibull-docs sphinx-init --use-current --squash-hierarchy --fail-on-error \
        --no-add-antsibull-docs-version --project samepage.ksm --copyright 'samepage.ksm contributors' \
        --title 'samepage.ksm' --html-short-title 'samepage.ksm' --dest-dir . samepage.ksm >/dev/null)
    (cd "$site" && antsibull-docs --config-file antsibull-docs.cfg collection --cleanup everything \
        --fail-on-error --use-current --squash-hierarchy --dest-dir rst samepage.ksm)
    # Offline: intersphinx reads a local inventory instead of downloading the Ansible documentation's;
    # references to it still point at its pages (tools/docsite_inventory.py).
    "$(venv_release)/bin/python" "$REPO/tools/docsite_inventory.py" "$site/rst" "$site/ansible_devel.inv"
    cat >>"$site/conf.py" <<'CONF'

# tools/ci.sh docs-site: no network; the Ansible documentation's labels come from a local inventory.
intersphinx_mapping = {
    'ansible_devel': ('https://docs.ansible.com/projects/ansible/devel/',
                      __import__('os').path.join(__import__('os').path.dirname(__file__), 'ansible_devel.inv')),
}
CONF
    say "-- sphinx-build -W (a warning fails the build)"
    (cd "$site" && sphinx-build -M html rst build -c . -W --keep-going -q) || failed=1
    if [ $failed -eq 0 ]; then
        local pages
        pages=$(find "$site/build/html" -name '*.html' | wc -l)
        local page
        for page in index ksm_sysfs_module ksm_unmerge_module ksm_info_module ksm_service_module \
                    ksm_role ksmtuned_role docsite/guide_profiles docsite/guide_security \
                    docsite/guide_tuning docsite/guide_troubleshooting; do
            [ -s "$site/build/html/$page.html" ] || { say "FAILED: $page.html missing from the site"; failed=1; }
        done
        say "docs site: $pages HTML pages (built in $site/build/html, removed afterwards)"
    fi
    return $failed
}

stage_docs_site() {
    bootstrapped
    local work rc=0
    work=$(mktemp -d "$CACHE/docs-site.XXXXXX")
    (docs_site_build "$work") || rc=$?
    if [ -n "${SAMEPAGE_KEEP_DOCS:-}" ] && [ $rc -eq 0 ]; then
        rm -rf "$SAMEPAGE_KEEP_DOCS" && mkdir -p "$(dirname "$SAMEPAGE_KEEP_DOCS")"
        mv "$work/site/build/html" "$SAMEPAGE_KEEP_DOCS"
        say "site kept in $SAMEPAGE_KEEP_DOCS"
    fi
    rm -rf "$work"
    [ $rc -eq 0 ] && say "docs site: OK (no warnings)"
    return $rc
}

installed_checks() {  # venv installed-collection-dir
    local venv=$1 dest=$2 failed=0 python
    # What this proves is that the shipped tests have all they need, so one Python (the controller's:
    # controller, modules and module_utils tests) is enough; the units stage covers the other Pythons.
    python=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    say "-- ansible-test units on the installed collection, $(ansible_version "$venv"), Python $python"
    (cd "$dest" && PATH="$CACHE/pythons:$PATH" "$venv/bin/ansible-test" units --venv --python "$python" --color no) 2>&1 \
        | { grep --line-buffered -vE "$PIP_NOISE" || true; }
    [ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
    with_ansible_test_lock "$venv" installed_sanity "$venv" "$dest" || failed=1
    return $failed
}

# What can differ between the repository's tree (sanity stage: every test) and the installed collection:
# the set of files (build_ignore may leave out something a plugin needs) and where the collection's version
# comes from (MANIFEST.json instead of galaxy.yml); ansible-galaxy copies each shipped file byte for byte.
# So only the tests that look across files or at the metadata run again: import (every plugin and
# module_utils imports from what is shipped, on every target Python), validate-modules (doc fragments,
# module_utils, version_added against the installed version), runtime-metadata (meta/runtime.yml against
# the shipped plugins and version) and action-plugin-docs (plugin layout). The tests of one file's own
# text (compile, pylint, pep8, yamllint, shellcheck, shebang, line-endings, no-*, use-*, ...) give the same
# answer on the same bytes, changelog and ignores read what the sanity stage reads, and ansible-doc of every
# module and role of the installed tarball is the build stage's.
INSTALLED_SANITY_TESTS="import validate-modules runtime-metadata action-plugin-docs"

installed_sanity() {  # venv installed-collection-dir
    local venv=$1 dest=$2 tests=() test
    for test in $INSTALLED_SANITY_TESTS; do tests+=(--test "$test"); done
    say "-- ansible-test sanity on the installed collection ($INSTALLED_SANITY_TESTS), $(ansible_version "$venv"), Pythons: $(target_pythons)"
    (cd "$dest" && PATH="$CACHE/pythons:$PATH" "$venv/bin/ansible-test" sanity "${tests[@]}" --venv --color no --truncate 0) 2>&1 \
        | { grep --line-buffered -vE "$PIP_NOISE" || true; }
    return "${PIPESTATUS[0]}"
}

# The collection playbooks as users reach them: by name from a directory that holds nothing of the
# collection, with only the installed tree on the collections path (so the roles are found there or not
# at all), and by path inside the installed tree (site.yml imports playbooks/site.yml). --syntax-check,
# then --list-tasks, which also loads the roles' task files (inventory/example is shipped).
installed_playbooks() {  # venv installed-collection-dir work-dir
    local venv=$1 dest=$2 work=$3 mode output rc path failed=0
    local playbooks=(samepage.ksm.site samepage.ksm.report "$dest/site.yml" "$dest/playbooks/report.yml")
    mkdir -p "$work/elsewhere"
    for mode in --syntax-check --list-tasks; do
        rc=0
        output=$(cd "$work/elsewhere" && ANSIBLE_COLLECTIONS_PATH=$work/collections ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false \
            "$venv/bin/ansible-playbook" -i "$dest/inventory/example" "$mode" "${playbooks[@]}" 2>&1) || rc=$?
        if [ $rc -ne 0 ]; then
            printf '%s\n' "$output"
            say "FAILED: ansible-playbook $mode ${playbooks[*]} (exit $rc)"
            failed=1
            continue
        fi
        # Each name resolved to the installed tree, in order: site, report, site, report.
        path=$(sed -n 's/^playbook: //p' <<<"$output" | tr '\n' ' ')
        if [ "$path" != "$dest/playbooks/site.yml $dest/playbooks/report.yml $dest/site.yml $dest/playbooks/report.yml " ]; then
            printf '%s\n' "$output"
            say "FAILED: ansible-playbook $mode read other playbooks than the installed ones: $path"
            failed=1
        fi
    done
    if [ $failed -eq 0 ] && ! grep -q 'samepage.ksm.ksmtuned : Start and enable ksmtuned' <<<"$output"; then
        printf '%s\n' "$output"
        say "FAILED: ansible-playbook --list-tasks samepage.ksm.site does not list the roles' tasks"
        failed=1
    fi
    [ $failed -eq 1 ] || say "ok: samepage.ksm.site and samepage.ksm.report by name, site.yml and playbooks/report.yml by path, from the installed collection (--syntax-check, --list-tasks)"
    return $failed
}

installed_run() {  # work-dir
    local work=$1 tarball dest path failed=0
    tarball=$(built_tarball "$work") || return 1
    ANSIBLE_COLLECTIONS_PATH=$work/collections \
        "$(venv_b)/bin/ansible-galaxy" collection install "$tarball" -p "$work/collections" >/dev/null || return 1
    dest=$work/collections/$COLLECTION_DIR
    for path in $DEVELOPER_ONLY; do
        if [ -e "$dest/$path" ]; then
            say "FAILED: $(basename "$tarball") ships $path (developer-only: add it to build_ignore in galaxy.yml)"
            failed=1
        fi
    done
    [ -s "$dest/COPYING" ] || { say "FAILED: no COPYING in $(basename "$tarball")"; failed=1; }
    [ $failed -eq 1 ] || say "ok: $(basename "$tarball") ships no developer-only path ($DEVELOPER_ONLY)"
    installed_playbooks "$(venv_b)" "$dest" "$work" || failed=1
    installed_checks "$(venv_b)" "$dest" || failed=1
    return $failed
}

stage_installed() {
    bootstrapped
    with_work_dir installed installed_run
}

importer_run() {  # work-dir
    local work=$1 tarball log rc=0
    tarball=$(built_tarball "$work")
    # flake8 on (galaxy-importer's optional check); ansible-test off (the sanity stages run it).
    cat >"$work/galaxy-importer.cfg" <<'CFG'
[galaxy-importer]
LOG_LEVEL_MAIN = INFO
RUN_FLAKE8 = True
RUN_ANSIBLE_LINT = True
RUN_ANSIBLE_TEST = False
CFG
    log=$work/importer.log
    (cd "$work" && GALAXY_IMPORTER_CONFIG=$work/galaxy-importer.cfg PATH="$(venv_release)/bin:$PATH" \
        "$(venv_release)/bin/python" -m galaxy_importer.main "$tarball") >"$log" 2>&1 || rc=$?
    cat "$log"
    if [ $rc -ne 0 ]; then
        say "FAILED: galaxy-importer exited with $rc"
        return 1
    fi
    if grep -qE '^(WARNING|ERROR)|^[^ ]+:[0-9]+:[0-9]+: [A-Z][0-9]+ ' "$log"; then
        say "FAILED: galaxy-importer reported warnings or errors (above)"
        return 1
    fi
    say "galaxy-importer: OK (no warning, flake8 on)"
}

stage_importer() {
    bootstrapped
    with_work_dir importer importer_run
}

ee_run() {  # work-dir
    local work=$1 tarball ctx failed=0 introspected
    tarball=$(built_tarball "$work")
    ANSIBLE_COLLECTIONS_PATH=$work/collections \
        "$(venv_b)/bin/ansible-galaxy" collection install "$tarball" -p "$work/collections" >/dev/null
    # The collection's own metadata, as ansible-builder reads it from an installed collection: the
    # files meta/execution-environment.yml names are shipped and empty (no controller-side dependency)...
    local meta=$work/collections/$COLLECTION_DIR/meta file
    for file in execution-environment.yml ee-requirements.txt ee-bindep.txt; do
        [ -f "$meta/$file" ] || { say "FAILED: $(basename "$tarball") does not ship meta/$file"; failed=1; }
    done
    introspected=$(cd "$work" && "$(venv_release)/bin/ansible-builder" introspect "$work/collections") || failed=1
    printf '%s\n' "$introspected"
    if grep -q 'from collection samepage.ksm' <<<"$introspected"; then
        say "FAILED: ansible-builder finds dependencies of samepage.ksm (meta/ee-*.txt should list none)"
        failed=1
    fi
    # ... and they are the files ansible-builder reads: a requirement added to a copy is found.
    mkdir -p "$work/probe"
    cp -a "$work/collections/ansible_collections" "$work/probe/"
    echo 'samepage-probe-package==1.0' >>"$work/probe/$COLLECTION_DIR/meta/ee-requirements.txt"
    echo 'samepage-probe-system [platform:rpm]' >>"$work/probe/$COLLECTION_DIR/meta/ee-bindep.txt"
    introspected=$("$(venv_release)/bin/ansible-builder" introspect "$work/probe") || failed=1
    if [ "$(grep -cE 'samepage-probe-(package==1.0|system).*# from collection samepage.ksm' <<<"$introspected")" -ne 2 ]; then
        printf '%s\n' "$introspected"
        say "FAILED: ansible-builder does not read meta/ee-requirements.txt and meta/ee-bindep.txt as meta/execution-environment.yml says"
        failed=1
    else
        say "ok: ansible-builder reads meta/ee-requirements.txt and meta/ee-bindep.txt (a probe requirement added to each was found)"
    fi
    # A user's execution environment that installs the collection from the tarball.
    mkdir -p "$work/ee"
    cp "$tarball" "$work/ee/"
    cat >"$work/ee/requirements.yml" <<YAML
---
collections:
  - name: ./$(basename "$tarball")
    type: file
YAML
    cat >"$work/ee/execution-environment.yml" <<YAML
---
version: 3
images:
  base_image:
    name: quay.io/ansible/awx-ee:latest
dependencies:
  galaxy: requirements.yml
additional_build_files:
  - src: $(basename "$tarball")
    dest: collections
YAML
    ctx=$work/ee/context
    (cd "$work/ee" && "$(venv_release)/bin/ansible-builder" create --file execution-environment.yml \
        --context "$ctx" --output-filename Containerfile -v 1) || failed=1
    local expect
    for expect in Containerfile _build/requirements.yml "_build/collections/$(basename "$tarball")"; do
        [ -s "$ctx/$expect" ] || { say "FAILED: ansible-builder create left no $expect"; failed=1; }
    done
    if ! grep -q 'ansible-galaxy collection install' "$ctx/Containerfile" 2>/dev/null; then
        say "FAILED: the Containerfile does not install the collections"
        failed=1
    fi
    [ $failed -eq 1 ] || say "ansible-builder create: OK (context in a temporary directory: Containerfile, requirements.yml, the tarball)"
    return $failed
}

stage_ee() {
    bootstrapped
    with_work_dir ee ee_run
}

integration_tree() {  # copy-root
    local root=$1 dest=$1/$COLLECTION_DIR
    # tools/with_ksm_host.py holds /tmp/samepage-ksm-host.lock for the whole run, snapshots every
    # writable knob and puts them back afterwards (tests/support/ksm_host.py), as the system suite does.
    (cd "$dest" && PATH="$CACHE/pythons:$PATH" "$(venv_b)/bin/python" "$REPO/tools/with_ksm_host.py" "$root" -- \
        "$(venv_b)/bin/ansible-test" integration --venv --allow-destructive --color no) 2>&1 \
        | { grep --line-buffered -vE "$PIP_NOISE" || true; }
    return "${PIPESTATUS[0]}"
}

stage_integration() {
    bootstrapped
    with_tree_lock "" integration_tree
}

stage_release() {  # VERSION
    local version=${1:-} current
    [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "usage: make release VERSION=x.y.z (semantic version)"
    bootstrapped
    cd "$REPO"
    [ -z "$(git status --porcelain)" ] || die "the working tree has uncommitted changes: commit or stash them first"
    current=$(sed -n 's/^version: *//p' galaxy.yml)
    if [ "$current" = "$version" ] || [ "$(printf '%s\n%s\n' "$current" "$version" | sort -V | tail -n 1)" != "$version" ]; then
        die "VERSION $version is not above the current version $current"
    fi
    "$(venv_release)/bin/antsibull-changelog" lint
    sed -i "s/^version: .*/version: $version/" galaxy.yml
    # antsibull-changelog runs ansible-doc to find the plugins and roles new in this release.
    PATH="$(venv_release)/bin:$PATH" "$(venv_release)/bin/antsibull-changelog" release --version "$version"
    local work tarball
    work=$(mktemp -d "$CACHE/release.XXXXXX")
    tarball=$(built_tarball "$work")
    mv "$tarball" "$REPO/"
    rm -rf "$work"
    say "released $version: galaxy.yml, changelogs/changelog.yaml and CHANGELOG.md updated, fragments removed;"
    say "tarball: $REPO/$(basename "$tarball")"
    say "next: review the diff, run make test, commit ('Release $version'), tag $version (docs/development.md)"
}

stage_demo() {
    bootstrapped
    cd "$REPO"
    SAMEPAGE_VENV=$(venv_b) exec python3 lab/labctl.py demo "$@"
}

stage_env() {
    prepare_cache
    say "repository:      $REPO"
    say "cache:           $CACHE"
    say "controller A:    $(venv_a) -> $(readlink "$(venv_a)" 2>/dev/null || echo 'not built')"
    say "controller B:    $(venv_b) -> $(readlink "$(venv_b)" 2>/dev/null || echo 'not built')"
    say "release tools:   $(venv_release) -> $(readlink "$(venv_release)" 2>/dev/null || echo 'not built')"
    say "target Pythons:  $CACHE/pythons ($(target_pythons))"
    say "collection copy: $(stage_tree)/ansible_collections/samepage/ksm (release stages: $(stage_tree -release))"
    say "ansible-test:    $HOME/.ansible/test (its venvs and the get-pip stand-in)"
}

stage_lock() {
    prepare_cache
    local name python tmp
    for name in controller-2.19 controller-2.21 target-py38 release-tools; do
        case $name in
            controller-2.19) python=$(python_a) ;;
            controller-2.21|release-tools) python=$(python_b) ;;
            target-py38) python=$(find_python 3.8) ;;
        esac
        tmp=$(mktemp -d "$CACHE/lock.XXXXXX")
        "$python" -m venv "$tmp/venv"
        "$tmp/venv/bin/python" -m pip install --quiet -r "$REQ_DIR/$name.in"
        # release-tools keeps setuptools pinned: pbr (an ansible-builder dependency) needs it at run time.
        local excludes=(--exclude pip --exclude wheel)
        [ "$name" = release-tools ] || excludes+=(--exclude setuptools)
        { grep '^#' "$REQ_DIR/$name.txt" || true; "$tmp/venv/bin/python" -m pip freeze --all "${excludes[@]}"; } > "$tmp/new.txt"
        mv "$tmp/new.txt" "$REQ_DIR/$name.txt"
        rm -rf "$tmp"
        say "resolved $REQ_DIR/$name.txt"
    done
}

stage_all() {
    local started stage rc seconds total_started failed=() skip=" ${SAMEPAGE_SKIP_STAGES:-} "
    local summary=() lab_log='' lab_started=0
    LAB_BACKGROUND_PID=''   # a global: the EXIT trap reads it after this function has returned
    total_started=$(date +%s)
    prepare_cache
    # The lab stage runs in the background from the start: its guests are emulated CPUs that mostly
    # wait on each other, its image build waits on the network, and nothing else uses them. It starts
    # before the environments exist (its image build and boot come first; it waits for bootstrap's lock
    # before running pytest) and in a session of its own, so that it can be stopped as a whole.
    if [[ $skip != *" lab "* ]]; then
        mkdir -p "$CACHE/logs"
        lab_log=$(mktemp "$CACHE/logs/lab.XXXXXX")
        lab_started=$(date +%s)
        setsid bash "${BASH_SOURCE[0]}" lab >"$lab_log" 2>&1 </dev/null &
        LAB_BACKGROUND_PID=$!
        trap '[ -z "$LAB_BACKGROUND_PID" ] || kill -TERM -- "-$LAB_BACKGROUND_PID" 2>/dev/null || true' EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM HUP
        say "lab stage started in the background (pid $LAB_BACKGROUND_PID, log $lab_log); its output follows the other stages"
    fi
    header "bootstrap: environments in $CACHE"
    started=$(date +%s)
    stage_bootstrap
    export SAMEPAGE_BOOTSTRAPPED=1
    summary+=("$(printf '%-12s %-6s %5ss' bootstrap ok $(( $(date +%s) - started )))")
    for stage in $ALL_STAGES; do
        if [[ $skip == *" $stage "* ]]; then
            summary+=("$(printf '%-12s %-6s' "$stage" skipped)")
            continue
        fi
        [ "$stage" != lab ] || continue     # running in the background
        header "$stage"
        started=$(date +%s)
        rc=0
        bash "${BASH_SOURCE[0]}" "$stage" || rc=$?
        seconds=$(( $(date +%s) - started ))
        if [ $rc -eq 0 ]; then
            summary+=("$(printf '%-12s %-6s %5ss' "$stage" ok "$seconds")")
        else
            summary+=("$(printf '%-12s %-6s %5ss' "$stage" FAILED "$seconds")")
            failed+=("$stage")
            if [ -n "${FAIL_FAST:-}" ]; then
                break
            fi
        fi
    done
    if [ -n "$LAB_BACKGROUND_PID" ]; then
        if [ -n "${FAIL_FAST:-}" ] && [ ${#failed[@]} -gt 0 ]; then
            kill -TERM -- "-$LAB_BACKGROUND_PID" 2>/dev/null || true
        fi
        header "lab (started in the background at the beginning)"
        rc=0
        wait "$LAB_BACKGROUND_PID" || rc=$?
        LAB_BACKGROUND_PID=''
        cat "$lab_log"
        rm -f "$lab_log"
        seconds=$(( $(date +%s) - lab_started ))
        if [ $rc -eq 0 ]; then
            summary+=("$(printf '%-12s %-6s %5ss %s' lab ok "$seconds" '(background, from the start)')")
        else
            summary+=("$(printf '%-12s %-6s %5ss %s' lab FAILED "$seconds" '(background, from the start)')")
            failed+=(lab)
        fi
    fi
    header "summary ($(( $(date +%s) - total_started ))s)"
    printf '%s\n' "${summary[@]}"
    if [ ${#failed[@]} -gt 0 ]; then
        say "FAILED stages: ${failed[*]}"
        return 1
    fi
    say "all stages passed"
}

main() {
    [ $# -gt 0 ] || set -- all
    local stage=$1
    shift
    case $stage in
        all|bootstrap|changelog|build|units|lint|sanity|integration|system|lab|demo|env|lock|installed|importer|ee|release)
            "stage_$stage" "$@" ;;
        docs-site) stage_docs_site "$@" ;;
        lab-suites) stage_lab_suites "$@" ;;
        *) die "unknown stage '$stage' (all bootstrap changelog build docs-site installed importer ee units lint sanity integration system lab demo env lock release)" ;;
    esac
}

main "$@"
