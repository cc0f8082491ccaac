# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Exclusive, self-restoring use of this machine's real /sys/kernel/mm/ksm.

/sys/kernel/mm/ksm is one per kernel and shared by everything on the machine (other test runs, other
developers' experiments). Whatever writes there holds an exclusive flock on LOCK_PATH for its whole
duration and puts back every value it touched, leaving no KSM pages shared:

    with ksm_host_guard() as host:
        host.set(run=1, pages_to_scan=5000)
        ...                      # run modules, start workloads
    # here: pages unmerged (run=2) if anything was shared, every writable knob as before, run last

The guard is re-entrant inside one process (a nested guard does not take the lock again, but does its
own snapshot and restore), so a test can use a guard inside the `ksm_host` fixture's guard and check
the restore while the lock is still held. All reading, planning and writing goes through
plugins/module_utils/_ksm.py (Ksm.read_state, Ksm.plan, Ksm.apply, Ksm.unmerge).
"""

import contextlib
import fcntl
import os
import sys
import threading
import time

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm

LOCK_PATH = '/tmp/samepage-ksm-host.lock'
SHARED_COUNTERS = ('pages_shared', 'pages_sharing', 'ksm_zero_pages')

_held = threading.local()


def skip_reason(ksm_dir=None):
    """Why the real /sys/kernel/mm/ksm cannot be used by these tests, or None when it can."""
    ksm_dir = ksm_dir or _ksm.KSM_DIR
    if not os.path.isdir(ksm_dir):
        return '%s does not exist: this kernel has no KSM (CONFIG_KSM is off)' % ksm_dir
    if hasattr(os, 'geteuid') and os.geteuid() != 0:
        return 'changing %s needs root (running as uid %d)' % (ksm_dir, os.geteuid())
    if os.statvfs(ksm_dir).f_flag & os.ST_RDONLY:
        return '%s is on a read-only mount (a container?): KSM belongs to the host kernel' % ksm_dir
    run = os.path.join(ksm_dir, 'run')
    if not os.path.exists(run) or not os.access(run, os.W_OK):
        return '%s is not writable here' % run
    return None


def writable_knobs(state):
    """The writable knobs present in a read_state() result, in the kernel's write order."""
    return {name: state[name] for name in _ksm.WRITE_ORDER if name in state}


class KsmHost:
    """Handle given by ksm_host_guard(): the real kernel's KSM, and the values to put back."""

    def __init__(self, ksm, snapshot):
        self.ksm = ksm
        self.snapshot = snapshot    # writable knobs at guard entry

    def state(self):
        """Every file of /sys/kernel/mm/ksm, typed."""
        return self.ksm.read_state()

    def set(self, **knobs):
        """Write knobs in the kernel's order (plan + apply); returns the writes made."""
        state = self.ksm.read_state()
        writes, dummy = self.ksm.plan(state, knobs)
        self.ksm.apply(writes, state)
        return writes

    def unmerge(self):
        """run=2: stop ksmd and unmerge every page."""
        self.ksm.unmerge(self.ksm.read_state())

    def differences(self):
        """{knob: (expected, live)} for every writable knob that is not back at its snapshot value."""
        live = writable_knobs(self.ksm.read_state())
        return {name: (value, live.get(name)) for name, value in self.snapshot.items()
                if live.get(name) != value}


def _say(text):
    sys.stderr.write(text + '\n')
    sys.stderr.flush()


@contextlib.contextmanager
def _exclusive_lock(path, say=_say):
    depth = getattr(_held, 'depth', 0)
    if depth:
        _held.depth = depth + 1
        try:
            yield
        finally:
            _held.depth -= 1
        return
    handle = open(path, 'a+')
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            started = time.time()
            say('waiting for %s (another user of /sys/kernel/mm/ksm holds it)' % path)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            say('got %s after %.0f s' % (path, time.time() - started))
        _held.depth = 1
        try:
            yield
        finally:
            _held.depth = 0
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def hold_host_lock(lock_path=LOCK_PATH, say=_say):
    """Hold the host lock without a snapshot (e.g. for a whole pytest session; guards inside it nest).

    say(text) reports waiting for the lock (default: standard error).
    """
    return _exclusive_lock(lock_path, say)


def restore(ksm, snapshot):
    """Put every writable knob back to snapshot, leaving no KSM pages shared. Raises on failure."""
    state = ksm.read_state()
    if state.get('run') != 0 or any(state.get(name) for name in SHARED_COUNTERS):
        # run=2 stops ksmd and unmerges everything (synchronously), so nothing merges again while the
        # other knobs are put back, and merge_across_nodes / max_page_sharing are writable again.
        ksm.unmerge(state)
        state = ksm.read_state()
    wanted = {name: value for name, value in snapshot.items() if name != 'run'}
    if wanted.get('advisor_mode') == 'scan-time':
        wanted.pop('pages_to_scan', None)   # the advisor owns it; entering scan-time resets it anyway
    writes, dummy = ksm.plan(state, wanted)
    ksm.apply(writes, state)
    state = ksm.read_state()
    if 'run' in snapshot and state.get('run') != snapshot['run']:
        ksm.write('run', snapshot['run'], state)   # exact value: plan() treats a live 2 as "stopped"
    state = ksm.read_state()
    problems = []
    for name, value in snapshot.items():
        if state.get(name) != value:
            problems.append('%s is %r, expected %r' % (name, state.get(name), value))
    if snapshot.get('run') != 1:
        for name in SHARED_COUNTERS:
            if state.get(name):
                problems.append('%s is %r after the unmerge' % (name, state.get(name)))
    if problems:
        raise RuntimeError('Could not restore /sys/kernel/mm/ksm: ' + '; '.join(problems))
    return state


@contextlib.contextmanager
def ksm_host_guard(lock_path=LOCK_PATH, ksm=None):
    """Hold the host lock, snapshot every writable knob, and on exit unmerge and restore them all."""
    ksm = ksm or _ksm.Ksm()
    with _exclusive_lock(lock_path):
        snapshot = writable_knobs(ksm.read_state())
        try:
            yield KsmHost(ksm, snapshot)
        finally:
            restore(ksm, snapshot)
