# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures of the lab suite: real Debian 12 and 13 guests under QEMU (lab/samepage_lab), reached over SSH.

The suite boots its OWN lab once per session, in a state directory of its own with ports of its own
(a demo lab that is running is never touched), and always stops it: at the end of the session, when a
test fails, on SIGTERM/SIGHUP, at interpreter exit, and, as a last resort, because each QEMU gets
SIGTERM from the kernel when the pytest process that started it dies. It kills only the QEMU processes
it started (recorded in pid files, checked against their command lines). A lab left by a session that
was killed outright is stopped by the next session.

Guests (samepage_lab.DEFAULT_GUESTS): lab-dense (Debian 12, kernel 6.1, one NUMA node), lab-balanced
(Debian 13, kernel 6.12, two NUMA nodes), lab-secure (Debian 13, one node); inventory groups dense,
balanced, secure under kvm_hosts, as in inventory/example.

A test that uses one guest (its fixture: debian12, debian13, numa_guest, or lab_guest's parameter) is
marked `one_guest(group=...)` with that fixture's group (debian12, debian13, numa); every other test is
marked `whole_lab`. `tools/ci.sh lab` boots one lab (`labctl run`) and runs a pytest per group side by
side (`-m "one_guest(group='debian12')"`, ...), then the whole-lab tests (`-m whole_lab`).

Environment:
  SAMEPAGE_SKIP_LAB=1            skip the whole suite (says so; e.g. a machine without QEMU)
  SAMEPAGE_LAB_REUSE=<state dir> run against a lab that is already up (labctl up) and leave it up
  SAMEPAGE_LAB_CACHE             image cache (shared with the demo lab; default /var/cache/samepage-ksm/lab)
"""

import atexit
import contextlib
import os
import shutil
import signal
import tempfile
import threading

import pytest

from ansible_collections.samepage.ksm.lab import samepage_lab
from ansible_collections.samepage.ksm.tests.lab.labtools import module

TEST_STATE_ROOT = os.path.join(tempfile.gettempdir(), 'samepage-ksm-lab-tests')
OWNER_FILE = samepage_lab.OWNER_FILE   # the process that holds a lab (this session, or a `labctl run`)

_active = []            # labs this process started and has not stopped yet
_cleanup_lock = threading.Lock()


def _stop_active():
    with _cleanup_lock:
        while _active:
            lab = _active.pop()
            try:
                lab.down(quiet=True)
            finally:
                shutil.rmtree(lab.state_dir, ignore_errors=True)


def _on_signal(signum, frame):
    _stop_active()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _sweep_abandoned():
    """Stop labs of earlier test sessions whose pytest process no longer exists."""
    if not os.path.isdir(TEST_STATE_ROOT):
        return
    for name in sorted(os.listdir(TEST_STATE_ROOT)):
        state = os.path.join(TEST_STATE_ROOT, name)
        try:
            with open(os.path.join(state, OWNER_FILE)) as handle:
                owner = int(handle.read().strip())
        except (OSError, ValueError):
            owner = None
        if owner is not None and samepage_lab.pid_alive(owner):
            continue
        samepage_lab.Lab(state_dir=state).down(quiet=True)
        shutil.rmtree(state, ignore_errors=True)


@contextlib.contextmanager
def _visible(request):
    """Show the lab's progress lines on the terminal even while pytest captures output."""
    capture = request.config.pluginmanager.getplugin('capturemanager')
    if capture is None:
        yield
        return
    with capture.global_and_fixture_disabled():
        yield


# Fixtures that stand for one guest, and the group of the tests that use it (tools/ci.sh LAB_GROUPS runs
# one pytest per group: tests/unit/tools/test_lab_groups.py keeps the two in step).
GUEST_FIXTURES = {'debian12': 'debian12', 'debian13': 'debian13', 'numa_guest': 'numa'}
HERE = os.path.dirname(os.path.abspath(__file__))


def guest_fixtures_of(item):
    """The guest fixtures a test uses, or None when it uses the whole lab (`guests`, or none at all)."""
    names = set(name for name in item.fixturenames if name in GUEST_FIXTURES)
    callspec = getattr(item, 'callspec', None)
    if callspec is not None and 'lab_guest' in callspec.params:
        names.add(callspec.params['lab_guest'])
    if 'guests' in item.fixturenames or not names:
        return None
    return names


@pytest.hookimpl(tryfirst=True)   # before -m deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        if not str(item.path).startswith(HERE + os.sep):
            continue
        used = guest_fixtures_of(item)
        if used is None or len(used) > 1:
            item.add_marker(pytest.mark.whole_lab)
        else:
            item.add_marker(pytest.mark.one_guest(group=GUEST_FIXTURES[used.pop()]))


@pytest.fixture(scope='session')
def lab(request):
    """The lab of this test session: booted once, stopped at the end whatever happens."""
    if os.environ.get('SAMEPAGE_SKIP_LAB'):
        pytest.skip('SAMEPAGE_SKIP_LAB is set: the lab suite does not run')
    reuse = os.environ.get('SAMEPAGE_LAB_REUSE')
    if reuse:
        existing = samepage_lab.Lab(state_dir=reuse)
        missing = [g.name for g in existing.guests if not g.answers()]
        if missing:
            pytest.fail('SAMEPAGE_LAB_REUSE=%s: %s not answering (python3 lab/labctl.py up first)'
                        % (reuse, ', '.join(missing)))
        yield existing
        return
    _sweep_abandoned()
    os.makedirs(TEST_STATE_ROOT, exist_ok=True)
    state = tempfile.mkdtemp(prefix='session-', dir=TEST_STATE_ROOT)
    with open(os.path.join(state, OWNER_FILE), 'w') as handle:
        handle.write('%d\n' % os.getpid())
    session_lab = samepage_lab.Lab(state_dir=state, specs=list(samepage_lab.DEFAULT_GUESTS), host_merge=False)
    _active.append(session_lab)
    atexit.register(_stop_active)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, _on_signal)
    try:
        with _visible(request):
            samepage_lab.say('tests/lab: booting the lab of this session in %s' % state)
            try:
                session_lab.up(tie_to_parent=True)
            except samepage_lab.LabError as exc:
                pytest.fail('the lab did not come up:\n%s' % exc, pytrace=False)
        yield session_lab
    finally:
        with _visible(request):
            samepage_lab.say('tests/lab: stopping the lab of this session')
            _stop_active()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@pytest.fixture(scope='session')
def guests(lab):
    """{name: samepage_lab.Guest} of the session's lab."""
    return {guest.name: guest for guest in lab.guests}


def _pick(lab, what, test):
    for guest in lab.guests:
        if test(guest):
            return guest
    pytest.fail('the lab has no %s guest' % what)


@pytest.fixture(scope='session')
def debian12(lab):
    """The Debian 12 guest (kernel 6.1: 14 KSM files, no advisor, no smart_scan)."""
    return _pick(lab, 'Debian 12', lambda g: g.debian == 12)


@pytest.fixture(scope='session')
def debian13(lab):
    """A Debian 13 guest with one NUMA node (kernel 6.12: 24 KSM files)."""
    return _pick(lab, 'one-node Debian 13', lambda g: g.debian == 13 and g.numa_nodes == 1)


@pytest.fixture(scope='session')
def numa_guest(lab):
    """The guest with two NUMA nodes (Debian 13)."""
    return _pick(lab, 'two-node', lambda g: g.numa_nodes > 1)


@pytest.fixture(params=['debian12', 'debian13'])
def lab_guest(request):
    """Parametrises a test over both kernel generations: the Debian 12 guest (6.1, systemd 252) and the
    one-node Debian 13 guest (6.12, systemd 257)."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def used_guests(request):
    """The guests this test uses, as its guest fixtures say (all of them for a whole-lab test)."""
    names = guest_fixtures_of(request.node)
    if names is None:
        return list(request.getfixturevalue('guests').values())
    return [request.getfixturevalue(name) for name in sorted(names)]


@pytest.fixture
def lab_run_module(lab, lab_guest):
    """run(module, args=None, check=False, diff=False) on `lab_guest`: the host's result dict."""
    def run(name, args=None, check=False, diff=False):
        return module(lab, lab_guest, name, args, check=check, diff=diff)
    return run
