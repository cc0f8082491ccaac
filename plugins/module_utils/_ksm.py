# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The kernel's KSM interface: the one place in the collection that knows /sys/kernel/mm/ksm.

Everything the modules need to know about the kernel lives here: the catalogue of files (type, range,
what a write does), how values read and how they must be written, the order writes must take, how
errno values translate into messages, and what an unmerge (``run=2``) costs in memory.

Every writer of KSM state (ksm_sysfs, ksm_unmerge, the tuner) reads, plans and writes inside
host_lock(), so concurrent runs on one host end in the state of some serial order of them.

Private to samepage.ksm (leading underscore): no stable API for anybody else. Standard library only
(and the collection's _errors), no Ansible imports, so that it runs on every target Python the supported ansible-core versions
allow (3.8 and newer) and can be tested on its own against a fake kernel.
"""

import contextlib
import errno
import fcntl
import os
import re
import time

from ._errors import SamepageError

KSM_DIR = '/sys/kernel/mm/ksm'
PROC_DIR = '/proc'
NODE_DIR = '/sys/devices/system/node'
MEMINFO = '/proc/meminfo'

UINT_MAX = 2 ** 32 - 1
ULONG_MAX = 2 ** 64 - 1
INT_MAX = 2 ** 31 - 1

# Kinds of value, named after the kernel helper that parses the write (mm/ksm.c).
UINT = 'uint'        # kstrtouint: 0..2^32-1, any parse error is EINVAL
ULONG = 'ulong'      # kstrtoul: 0..2^64-1
INT = 'int'          # kstrtoint: signed, > INT_MAX is ERANGE
BOOL = 'bool'        # kstrtobool: we always send 0/1
CHOICE = 'choice'    # sysfs_streq against a fixed list; reads back as "[a] b"
SIGNED = 'signed'    # read-only signed counter (general_profit)


class Knob:
    """One file of /sys/kernel/mm/ksm and what the kernel does with it."""

    __slots__ = ('name', 'kind', 'minimum', 'maximum', 'choices', 'writable', 'busy_while_shared',
                 'since', 'unit', 'description')

    def __init__(self, name, kind, minimum=None, maximum=None, choices=None, writable=True,
                 busy_while_shared=False, since='2.6.32', unit=None, description=''):
        self.name = name
        self.kind = kind
        self.minimum = minimum
        self.maximum = maximum
        self.choices = choices
        self.writable = writable
        self.busy_while_shared = busy_while_shared
        self.since = since
        self.unit = unit
        self.description = description

    def range_text(self):
        if self.kind == BOOL:
            return 'true or false'
        if self.kind == CHOICE:
            return 'one of ' + ', '.join(self.choices)
        return 'an integer from %d to %d' % (self.minimum, self.maximum)


# Writable knobs, in the order they must be written. The order is the kernel's:
# - the advisor's tunables before advisor_mode, because entering scan-time copies
#   advisor_min_pages_to_scan into pages_to_scan at that moment;
# - advisor_mode before pages_to_scan, because changing the mode resets pages_to_scan;
# - merge_across_nodes and max_page_sharing late (they need no KSM pages shared: EBUSY);
# - run last, so ksmd starts with every other setting already in place.
WRITABLE_KNOBS = (
    Knob('advisor_max_cpu', UINT, 0, UINT_MAX, since='6.8', unit='percent of one CPU',
         description='CPU budget of ksmd for the scan-time advisor. The kernel stores it in 32 bits '
                     'and silently truncates larger values, so they are refused here.'),
    Knob('advisor_min_pages_to_scan', ULONG, 0, ULONG_MAX, since='6.8', unit='pages',
         description='pages_to_scan the advisor starts from when scan-time is enabled.'),
    Knob('advisor_max_pages_to_scan', ULONG, 0, ULONG_MAX, since='6.8', unit='pages',
         description='Upper cap of the pages_to_scan the advisor sets.'),
    Knob('advisor_target_scan_time', ULONG, 1, ULONG_MAX, since='6.8', unit='seconds',
         description='Time the advisor aims at for one full scan.'),
    Knob('advisor_mode', CHOICE, choices=('none', 'scan-time'), since='6.8',
         description='none: pages_to_scan is set by hand; scan-time: the kernel advisor sets it. '
                     'Changing the mode resets pages_to_scan.'),
    Knob('pages_to_scan', UINT, 0, UINT_MAX, unit='pages',
         description='Pages ksmd scans per batch. Refused by the kernel (EINVAL) while advisor_mode is '
                     'scan-time.'),
    Knob('sleep_millisecs', UINT, 0, UINT_MAX, unit='milliseconds',
         description='Pause of ksmd between batches.'),
    Knob('use_zero_pages', BOOL, since='4.11',
         description='Merge empty pages into the kernel zero page (affects future merges only).'),
    Knob('smart_scan', BOOL, since='6.7',
         description='Skip pages that repeatedly fail to merge.'),
    Knob('stable_node_chains_prune_millisecs', UINT, 0, UINT_MAX, since='4.13', unit='milliseconds',
         description='How often ksmd prunes stale stable-node chains.'),
    Knob('max_page_sharing', INT, 2, INT_MAX, busy_while_shared=True, since='4.13', unit='sharers',
         description='Maximum sharers of one KSM page. Can change only while no page is shared.'),
    Knob('merge_across_nodes', UINT, 0, 1, busy_while_shared=True, since='3.9',
         description='1: merge pages across NUMA nodes; 0: separate trees per node. Can change only '
                     'while no page is shared. Exists only on kernels built with NUMA.'),
    Knob('run', UINT, 0, 2,
         description='0: ksmd stopped, merged pages kept; 1: ksmd scans; 2: stop and unmerge every page.'),
)

# Written only by tools of the RHEL 6 era (removed from the kernel in 2.6.33); read, never managed.
LEGACY_KNOBS = (
    Knob('max_kernel_pages', ULONG, 0, ULONG_MAX, writable=False, since='2.6.32 only', unit='pages',
         description='Legacy cap on KSM pages (kernels before 2.6.33).'),
)

COUNTERS = (
    Knob('pages_shared', ULONG, writable=False, unit='pages', description='KSM pages in use.'),
    Knob('pages_sharing', ULONG, writable=False, unit='pages',
         description='Further mappings of those pages: about the pages saved.'),
    Knob('pages_unshared', ULONG, writable=False, unit='pages',
         description='Unique pages scanned repeatedly without a match.'),
    Knob('pages_volatile', ULONG, writable=False, unit='pages',
         description='Pages changing too fast to be merged.'),
    Knob('full_scans', ULONG, writable=False, description='Completed full scans (reset by run=2).'),
    Knob('stable_node_chains', ULONG, writable=False, since='4.13',
         description='KSM pages that reached max_page_sharing.'),
    Knob('stable_node_dups', ULONG, writable=False, since='4.13',
         description='Duplicate KSM pages inside those chains.'),
    Knob('general_profit', SIGNED, writable=False, since='6.4', unit='bytes',
         description='Bytes saved minus the metadata KSM spends (may be negative).'),
    Knob('ksm_zero_pages', ULONG, writable=False, since='6.5', unit='pages',
         description='Empty pages merged into the kernel zero page (use_zero_pages).'),
    Knob('pages_scanned', ULONG, writable=False, since='6.6', unit='pages',
         description='Pages scanned since boot.'),
    Knob('pages_skipped', ULONG, writable=False, since='6.7', unit='pages',
         description='Pages smart_scan skipped since boot.'),
)

CATALOGUE = {knob.name: knob for knob in WRITABLE_KNOBS + LEGACY_KNOBS + COUNTERS}
WRITE_ORDER = tuple(knob.name for knob in WRITABLE_KNOBS)

# What the kernel puts pages_to_scan to when advisor_mode changes (mm/ksm.c, set_advisor_defaults).
PAGES_TO_SCAN_AFTER_ADVISOR_OFF = 100


class KsmError(SamepageError):
    """A failure of the kernel layer: the message names the knob, the value and the reason."""


class KsmUnavailable(KsmError):
    """This kernel has no KSM (no /sys/kernel/mm/ksm)."""


# ---------------------------------------------------------------------------------------------------
# Values: validation of what is asked, parsing of what is read, encoding of what is written

def validate(name, value):
    """Return value normalised for knob name, or raise KsmError naming the knob, value and rule."""
    knob = CATALOGUE.get(name)
    if knob is None or not knob.writable:
        raise KsmError('%s is not a writable KSM knob' % name, knob=name)
    if knob.kind == BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise KsmError('Invalid value %r for %s: expected true or false' % (value, name), knob=name)
    if knob.kind == CHOICE:
        if value in knob.choices:
            return value
        raise KsmError('Invalid value %r for %s: expected %s' % (value, name, knob.range_text()), knob=name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise KsmError('Invalid value %r for %s: expected %s' % (value, name, knob.range_text()), knob=name)
    if not knob.minimum <= value <= knob.maximum:
        reason = knob.range_text()
        if name == 'advisor_max_cpu' and value > knob.maximum:
            reason += ' (the kernel stores it in 32 bits and would silently truncate it)'
        raise KsmError('Invalid value %d for %s: expected %s' % (value, name, reason), knob=name)
    return value


def parse(name, text):
    """Typed value of a file as the kernel prints it ("100\\n", "[none] scan-time\\n")."""
    knob = CATALOGUE.get(name)
    text = text.strip()
    if knob is None:
        return text
    if knob.kind == CHOICE:
        match = re.search(r'\[([^\]]+)\]', text)
        return match.group(1) if match else text
    try:
        number = int(text)
    except ValueError:
        raise KsmError('Cannot parse %s/%s: %r is not a number' % (KSM_DIR, name, text), knob=name)
    if knob.kind == BOOL:
        return bool(number)
    return number


def encode(name, value):
    """What to write: decimal ASCII for numbers, 0/1 for booleans (older kernels accept fewer spellings)."""
    if isinstance(value, bool):
        return '1' if value else '0'
    return str(value)


def same(name, live, wanted):
    """Whether a live value already satisfies the wanted one (normalised comparison)."""
    if name == 'run' and wanted == 0 and live == 2:
        # run=2 is "stopped, and everything unmerged": it satisfies "stopped".
        return True
    return live == wanted


# ---------------------------------------------------------------------------------------------------
# Access to the files

class SysfsIO:
    """Reads and writes the real files. Tests replace it with a fake that follows the kernel's rules."""

    def __init__(self, root=KSM_DIR):
        self.root = root

    def available(self):
        return os.path.isdir(self.root)

    def names(self):
        return sorted(os.listdir(self.root))

    def exists(self, name):
        return os.path.exists(os.path.join(self.root, name))

    def read(self, name):
        with open(os.path.join(self.root, name), 'rb') as handle:
            return handle.read().decode('ascii', 'replace')

    def write(self, name, data):
        # One unbuffered write(2) on a descriptor we close ourselves: the kernel's answer to the
        # write is the answer we get. (A buffered file object can hand the error to the garbage
        # collector instead.) No O_CREAT/O_TRUNC: these are sysfs attributes.
        fd = os.open(os.path.join(self.root, name), os.O_WRONLY)
        try:
            payload = data.encode('ascii')
            written = os.write(fd, payload)
            if written != len(payload):
                raise OSError(errno.EIO, 'short write (%d of %d bytes)' % (written, len(payload)))
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------------------
# The host lock: one writer of KSM state at a time

# /run/lock is the FHS place for lock files (tmpfs: gone at reboot, so no stale file survives a boot).
LOCK_PATH = '/run/lock/samepage-ksm.lock'
# How long a writer waits for another one by default (seconds). An unmerge of a large host takes a few
# seconds (about 0.5 s per GiB merged), a boot-unit commit less: a minute covers both with room to spare.
LOCK_TIMEOUT = 60
LOCK_POLL = 0.1


class KsmLockTimeout(KsmError):
    """The host lock stayed held by another writer for the whole bounded wait."""


def lock_holder(path=None):
    """What the holder of the host lock wrote into it ("pid=.. program=.. since=.."), or '' if unknown."""
    try:
        with open(path or LOCK_PATH, 'rb') as handle:
            text = handle.read(512).decode('utf-8', 'replace').strip()
    except (OSError, ValueError):
        return ''
    return ' '.join(text.split())   # one line, whatever was written


def _open_lock(path):
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        try:
            os.makedirs(directory, 0o755)
        except OSError as err:
            if not os.path.isdir(directory):
                raise KsmError('Cannot create %s for the host lock of KSM writers: %s' % (directory, err))
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644), True
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise KsmError('Cannot open the host lock %s: %s' % (path, err))
    try:
        # Not ours to write (another user created it): the lock works, the holder is not recorded.
        return os.open(path, os.O_RDONLY), False
    except OSError as err:
        raise KsmError('Cannot open the host lock %s: %s' % (path, err))


@contextlib.contextmanager
def host_lock(timeout=LOCK_TIMEOUT, who='samepage.ksm', path=None):
    """Hold the host-wide lock of KSM writers (flock on LOCK_PATH) for the body of a with statement.

    Waits at most timeout seconds for another holder, then raises KsmLockTimeout naming it (its pid,
    program and since when, as it wrote them into the lock file). who names the holder for others
    (e.g. 'samepage.ksm.ksm_sysfs'). The kernel releases the lock when the holder's process ends,
    however it ends: a crashed writer never leaves the host locked.
    """
    path = path or LOCK_PATH
    fd, writable = _open_lock(path)
    try:
        deadline = time.time() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise KsmError('Cannot take the host lock %s: %s' % (path, err))
            if time.time() >= deadline:
                holder = lock_holder(path) or 'a process that did not record itself'
                raise KsmLockTimeout(
                    'Another writer of KSM settings holds the host lock %s (%s) and did not release it within '
                    '%s s; nothing was read or changed. Let it finish and run again, or raise lock_timeout.'
                    % (path, holder, timeout), holder=holder)
            time.sleep(LOCK_POLL)
        if writable:
            record = 'pid=%d program=%s since=%s\n' % (
                os.getpid(), who, time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
            os.ftruncate(fd, 0)
            os.write(fd, record.encode('utf-8', 'replace'))
        try:
            yield
        finally:
            if writable:
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)   # releases the flock


@contextlib.contextmanager
def no_lock():
    """A stand-in for host_lock() where none is needed (check mode reads only)."""
    yield


def _explain(name, value, err, state):
    """Turn an OSError from a write into the reason an operator needs."""
    code = err.errno
    if code == errno.EACCES or code == errno.EPERM:
        if hasattr(os, 'geteuid') and os.geteuid() != 0:
            return 'permission denied: changing KSM needs root (run the task with become: true)'
        return 'permission denied by the kernel (the file is read-only, or a security module denies it)'
    if code == errno.EROFS:
        return ('/sys is mounted read-only here (a container or a locked-down host): KSM can only be '
                'changed on the host that owns the kernel')
    if code == errno.EBUSY:
        if state.get('pages_shared') == 0:
            return ('the kernel refuses to change it (EBUSY) although pages_shared=0: stable nodes left by '
                    'processes that exited still exist; an unmerge (run=2: samepage.ksm.ksm_unmerge, or '
                    'unmerge_if_busy=true) removes them')
        return ('the kernel refuses to change it while KSM pages are shared (pages_shared=%s); unmerge '
                'first (samepage.ksm.ksm_unmerge), or let the task do it with unmerge_if_busy=true'
                % state.get('pages_shared', '?'))
    if code == errno.EINVAL:
        if name == 'pages_to_scan' and state.get('advisor_mode') == 'scan-time':
            return 'the scan-time advisor owns pages_to_scan (set advisor_mode=none to set it by hand)'
        knob = CATALOGUE.get(name)
        return 'the kernel rejected it as invalid (EINVAL; expected %s)' % (
            knob.range_text() if knob and knob.writable else 'a valid value')
    if code == errno.ERANGE:
        knob = CATALOGUE.get(name)
        return 'out of range for the kernel (ERANGE; expected %s)' % (knob.range_text() if knob else '?')
    if code == errno.ENOMEM:
        if name == 'run' and value == 2:
            return ('the unmerge ran out of memory: the kernel stopped it half done and set run=0; some '
                    'pages are still shared and processes may have been killed by the OOM killer')
        return 'the kernel ran out of memory (ENOMEM)'
    if code == errno.EINTR:
        if name == 'run' and value == 2:
            return 'the unmerge was interrupted by a signal: the kernel stopped it half done and set run=0'
        return 'interrupted by a signal (EINTR)'
    if code == errno.ENOENT:
        return 'the file does not exist on this kernel'
    return '%s (errno %s)' % (os.strerror(code) if code else str(err), code)


class Ksm:
    """The KSM interface of one kernel: reads state, plans and performs writes in the kernel's order."""

    def __init__(self, io=None):
        self.io = io if io is not None else SysfsIO()
        # Every write the kernel accepted, in order ([(name, value)]): what really happened, for the
        # result of a task that fails half way (undo writes included).
        self.journal = []

    # -- reading --------------------------------------------------------------------------------
    def available(self):
        return self.io.available()

    def require(self):
        if not self.io.available():
            raise KsmUnavailable(
                '%s does not exist: this kernel has no KSM (built without CONFIG_KSM)' % self.io.root)

    def read_state(self):
        """Every file of the directory, typed: {name: value}. Unknown files are kept as text."""
        self.require()
        state = {}
        for name in self.io.names():
            try:
                text = self.io.read(name)
            except OSError as err:
                if err.errno in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EINVAL):
                    continue  # unreadable (e.g. write-only or vanished): nothing to report
                raise KsmError('Cannot read %s/%s: %s' % (self.io.root, name, err), knob=name)
            state[name] = parse(name, text)
        return state

    # -- planning -------------------------------------------------------------------------------
    def plan(self, state, wanted, skip_missing=False):
        """Ordered writes that turn state into wanted.

        Returns (writes, missing): writes is a list of (name, value) in the kernel's order, each one
        needed given the kernel's side effects of the writes before it; missing lists requested knobs
        this kernel lacks (only when skip_missing, otherwise that is an error).
        Raises KsmError, before anything is written, for every request the kernel would refuse.
        """
        missing = []
        for name in sorted(wanted):
            validate(name, wanted[name])
            if name not in state:
                if skip_missing:
                    missing.append(name)
                    continue
                raise KsmError(
                    '%s is not available on this kernel (%s): %s/%s does not exist (it came with Linux %s'
                    '%s). Leave it out, or set skip_missing=true to skip such knobs with a warning.'
                    % (name, kernel_release(), self.io.root, name, CATALOGUE[name].since,
                       ', and needs a kernel built with NUMA' if name == 'merge_across_nodes' else ''),
                    knob=name)
        wanted = {k: v for k, v in wanted.items() if k not in missing}

        mode = wanted.get('advisor_mode', state.get('advisor_mode', 'none'))
        if 'pages_to_scan' in wanted and mode == 'scan-time':
            raise KsmError(
                'pages_to_scan=%s cannot be set while advisor_mode is scan-time: the kernel advisor owns '
                'pages_to_scan and the kernel refuses the write (EINVAL). Set advisor_mode=none to set '
                'pages_to_scan by hand, or leave pages_to_scan out.' % wanted['pages_to_scan'],
                knob='pages_to_scan', value=wanted['pages_to_scan'])

        predicted = dict(state)
        writes = []
        for name in WRITE_ORDER:
            if name not in wanted or same(name, predicted.get(name), wanted[name]):
                continue
            writes.append((name, wanted[name]))
            self._predict(predicted, name, wanted[name])
        return writes, missing

    @classmethod
    def predict(cls, state, writes):
        """The state after writes ([(name, value)]), with the kernel's side effects of each write."""
        predicted = dict(state)
        for name, value in writes:
            cls._predict(predicted, name, value)
        return predicted

    @staticmethod
    def _predict(predicted, name, value):
        """The kernel's side effects of one write, so later comparisons see what will really be there."""
        if name == 'advisor_mode' and predicted.get(name) != value:
            predicted['pages_to_scan'] = (predicted.get('advisor_min_pages_to_scan')
                                          if value == 'scan-time' else PAGES_TO_SCAN_AFTER_ADVISOR_OFF)
        if name == 'run' and value == 2:
            for counter in ('pages_shared', 'pages_sharing', 'ksm_zero_pages'):
                if counter in predicted:
                    predicted[counter] = 0
        predicted[name] = value

    @staticmethod
    def blocked_by_sharing(state, writes):
        """Knobs among writes that the kernel refuses (EBUSY) while pages are shared."""
        if not state.get('pages_shared'):
            return []
        return [name for name, dummy in writes if CATALOGUE[name].busy_while_shared]

    # -- writing --------------------------------------------------------------------------------
    def write(self, name, value, state=None):
        """One write, with the kernel's error translated. state gives context for the message."""
        if not self.io.exists(name):
            # Opening a missing name in sysfs for writing says EACCES, which would mislead.
            raise KsmError('Cannot set %s=%s: %s/%s does not exist on this kernel'
                           % (name, encode(name, value), self.io.root, name), knob=name, value=value)
        try:
            self.io.write(name, encode(name, value))
        except OSError as err:
            raise KsmError('Cannot set %s=%s: %s' % (name, encode(name, value),
                                                     _explain(name, value, err, state or {})),
                           knob=name, value=value, errno=err.errno)
        self.journal.append((name, value))

    def apply(self, writes, state):
        """Perform writes in order. If one fails, put back what the earlier ones changed, and raise.

        Validation and planning catch what can be known in advance; this covers what cannot (a race
        with another writer, EBUSY from stale stable nodes, a security module), so a task never leaves
        a half-applied change behind.
        """
        done = []
        made = []
        for name, value in writes:
            try:
                self.write(name, value, state)
            except KsmError as err:
                undone, not_undone = self._undo(made, state)
                msg = err.msg
                if undone:
                    msg += ' Earlier writes of this task were undone: %s.' % ', '.join(undone)
                if not_undone:
                    msg += ' Could not undo: %s.' % ', '.join(not_undone)
                raise KsmError(msg, **err.details)
            done.append(name)
            made.append((name, value))
        return done

    def _undo(self, made, state):
        """Put back what the writes made changed, in the kernel's order (like a plan of its own).

        Changing advisor_mode also reset pages_to_scan, so that is put back too when the mode returns
        to none; when it returns to scan-time the advisor owns pages_to_scan (the kernel refuses the
        write) and restarts it from advisor_min_pages_to_scan, which is restored before the mode.
        """
        now = dict(state)
        for name, value in made:
            self._predict(now, name, value)
        restore = {name: state[name] for name, dummy in made if name in state}
        if 'advisor_mode' in restore and 'pages_to_scan' in state:
            restore['pages_to_scan'] = state['pages_to_scan']
        if state.get('advisor_mode') == 'scan-time':
            restore.pop('pages_to_scan', None)
        undone, not_undone = [], []
        for name in WRITE_ORDER:
            if name not in restore or now.get(name) == restore[name]:
                continue
            previous = restore[name]
            try:
                self.write(name, previous, state)
                undone.append('%s=%s' % (name, encode(name, previous)))
                self._predict(now, name, previous)
            except KsmError:
                not_undone.append('%s (was %s)' % (name, encode(name, previous)))
        return undone, not_undone

    # -- unmerging ------------------------------------------------------------------------------
    def unmerge(self, state):
        """Unmerge every KSM page (run=2). The write is synchronous: when it returns, it is done.

        Returns the seconds it took. Raises KsmError saying what state the kernel was left in.
        """
        if state.get('run') == 2:
            # Writing the value in effect is a no-op for the kernel; 0 then 2 forces a new unmerge.
            self.write('run', 0, state)
        started = time.time()
        self.write('run', 2, state)
        return time.time() - started

    def unmerge_verified(self, state):
        """Unmerge every KSM page, read the state back and check that nothing is left shared.

        Returns (seconds, state after). Raises KsmError saying what the kernel left behind: when the
        write fails (ENOMEM, a signal) the kernel has set run=0 with the job half done, and the message
        adds the counters read back afterwards; when the write succeeds but pages are still shared, the
        message names them.
        """
        try:
            seconds = self.unmerge(state)
        except KsmError as err:
            raise KsmError('%s. %s' % (err.msg.rstrip('.'), self._left_behind()), **err.details)
        after = self.read_state()
        left = sharing_left(after)
        if left:
            raise KsmError(
                'The unmerge (run=2) returned success but KSM pages are still shared afterwards (%s, '
                'run=%s): another writer of %s/run may have started ksmd again (ksmtuned?).'
                % (', '.join('%s=%s' % item for item in left), after.get('run'), self.io.root),
                remaining=dict(left))
        return seconds, after

    def _left_behind(self):
        """The state after a failed unmerge, as a sentence for the error message."""
        try:
            after = self.read_state()
        except KsmError as err:
            return 'The state could not be read back afterwards: %s' % err.msg
        return 'Read back afterwards: run=%s, %s.' % (
            after.get('run'), ', '.join('%s=%s' % (name, after[name]) for name in SHARING_COUNTERS
                                        if name in after))

    # -- a whole change: plan, then execute -----------------------------------------------------
    def plan_change(self, state, wanted, skip_missing=False, unmerge_if_busy=False, margin=None):
        """The ChangePlan that turns state into wanted ({knob: kernel value}).

        Knobs the kernel refuses to change while pages are shared (EBUSY) make the plan unmerge first
        when unmerge_if_busy, after the memory check against margin (the memory_margin option); without
        it the plan is refused. Raises KsmError, before anything is written, for every request the
        kernel would refuse and for an unmerge that does not fit in memory.
        """
        writes, missing = self.plan(state, wanted, skip_missing=skip_missing)
        applied = {name: value for name, value in wanted.items() if name not in missing}
        plan = ChangePlan(state, applied, missing, writes, unmerge_if_busy, margin)
        plan.busy = self.blocked_by_sharing(state, writes)
        if plan.busy:
            if not unmerge_if_busy:
                raise KsmError(busy_message(state, writes, plan.busy), knob=plan.busy[0])
            plan.unmerge = True
            plan.memory = plan.check_memory(state)
            sequence = unmerge_writes(state)
            plan.writes = sequence + self._writes_after_unmerge(self.predict(state, sequence), applied,
                                                                plan.run_after)
        plan.predicted = self.predict(state, plan.writes)
        return plan

    def execute(self, plan):
        """Make the planned change. Returns the writes made ([(name, value)]); plan.unmerged gets the
        unmerge's figures when there was one. An UnmergePlan (plan_unmerge) is made by execute_unmerge.

        Plain writes go through apply() (undone on failure). EBUSY with nothing shared means stale
        stable nodes: with unmerge_if_busy the change is made again around an unmerge. Around an
        unmerge: run=2, the knobs, run put back; one more unmerge and retry on EBUSY; on failure run is
        put back as it was and the message says so. Raises KsmError with what was left.
        """
        if isinstance(plan, UnmergePlan):
            return self.execute_unmerge(plan)
        if plan.unmerge:
            return self._execute_with_unmerge(plan, plan.state)
        if not plan.writes:
            return []
        try:
            self.apply(plan.writes, plan.state)
            return list(plan.writes)
        except KsmError as err:
            if err.details.get('errno') != errno.EBUSY or not plan.unmerge_if_busy:
                raise
        # apply() has undone what it wrote; the unmerge clears what holds the knob.
        current = self.read_state()
        plan.check_memory(current)
        return self._execute_with_unmerge(plan, current)

    def _writes_after_unmerge(self, current, applied, run_after):
        """Writes after an unmerge: the knobs, then run put back exactly (a live 2 satisfies 0 for plan())."""
        wanted = dict(applied)
        wanted['run'] = run_after
        writes, dummy = self.plan(current, wanted)
        if current.get('run') != run_after and not any(name == 'run' for name, dummy in writes):
            writes.append(('run', run_after))
        return writes

    def _execute_with_unmerge(self, plan, state):
        done = []
        figures = unmerged_figures(state, 0.0)
        try:
            current = state
            for attempt in (1, 2):
                sequence = unmerge_writes(current)
                seconds, current = self.unmerge_verified(current)
                done.extend(sequence)
                figures['duration'] += seconds
                writes = self._writes_after_unmerge(current, plan.applied, plan.run_after)
                try:
                    self.apply(writes, current)
                except KsmError as err:
                    if err.details.get('errno') != errno.EBUSY or attempt == 2:
                        raise
                    # Stale stable nodes (exited processes) can hold the knob after the unmerge; another
                    # unmerge (run 0 then 2) removes them.
                    current = self.read_state()
                    continue
                done.extend(writes)
                break
        except KsmError as err:
            raise KsmError(err.msg + self._restore_run(state), **err.details)
        figures['duration'] = round(figures['duration'], 3)
        plan.unmerged = figures
        return done

    def _restore_run(self, state):
        """After a failure past the unmerge: put run back as it was; the sentence saying so."""
        previous = state.get('run')
        try:
            current = self.read_state()
            if current.get('run') != previous:
                self.write('run', previous, current)
        except KsmError as err:
            return ' KSM had been unmerged for the change; run could not be put back to %s: %s' % (previous, err.msg)
        return ' KSM had been unmerged for the change (run=2); run was put back to %s.' % previous

    def plan_unmerge(self, wanted_run, budget):
        """The UnmergePlan of ksm_unmerge: everything unmerged, ksmd left at wanted_run (2 stopped, 1 running),
        with the memory check's verdict against budget (an UnmergeBudget).

        An unmerge is needed when something is shared, and to stop a running ksmd (run=2 also frees its
        scan metadata; with nothing shared it costs nothing, and needs no memory check). run=0 with nothing
        shared is "stopped, nothing merged" as much as run=2 is. A kernel without KSM has nothing to
        unmerge: the plan changes nothing, unless ksmd is to run (KsmUnavailable).
        """
        if not self.available():
            if wanted_run == 1:
                self.require()     # raises KsmUnavailable: ksmd cannot run on this kernel
            plan = UnmergePlan({}, wanted_run, MemoryVerdict(0, budget), available=False)
            plan.run_after = None
            return plan
        state = self.read_state()
        shared = sharing_left(state)
        live_run = state.get('run')
        needed = unmerge_cost(state)
        plan = UnmergePlan(state, wanted_run, MemoryVerdict(needed, budget))
        in_place = same('run', live_run, wanted_run) or (wanted_run == 2 and live_run == 0)
        if not shared and in_place:
            plan.run_after = live_run
            return plan
        plan.unmerge = bool(shared) or (wanted_run == 2 and live_run == 1)
        plan.writes = (unmerge_writes(state) if plan.unmerge else []) + ([('run', 1)] if wanted_run == 1 else [])
        plan.predicted = self.predict(state, plan.writes)
        if plan.unmerge and needed:
            plan.memory = budget.verdict(state)
        return plan

    def execute_unmerge(self, plan):
        """Make an UnmergePlan: the unmerge (verified: nothing left shared), run=1 when ksmd is to run, the
        state and the host's memory read back. Returns plan.outcome (an UnmergeOutcome).

        A plan whose memory verdict refuses the unmerge is not made unless the verdict was overridden
        (MemoryVerdict.override). On failure plan.outcome holds what really happened, from the state read
        back afterwards (the kernel may have refused run=2, stopped the unmerge half done with run=0, or
        unmerged before run=1 was refused), and the KsmError is raised.
        """
        plan.memory.require()
        state = plan.state
        outcome = plan.outcome = UnmergeOutcome(plan)
        if not plan.changed:
            return outcome
        written = len(self.journal)
        try:
            after = state
            if plan.unmerge:
                seconds, after = self.unmerge_verified(state)
                outcome.unmerged = True
                outcome.duration = round(seconds, 3)
            if plan.wanted_run == 1:
                try:
                    self.write('run', 1, after)
                except KsmError as err:
                    raise KsmError('%s Everything was unmerged; ksmd is left stopped (run=%s).'
                                   % (err.msg, after.get('run')), **err.details)
        except SamepageError:
            outcome.read_back_failure(self, wrote=len(self.journal) > written)
            raise
        outcome.after = self.read_state()
        outcome.run_after = outcome.after.get('run')
        try:
            outcome.meminfo_after = read_meminfo()
        except OSError as err:   # the unmerge is done: report it, without the figures afterwards
            outcome.meminfo_error = 'Cannot read the memory figures of the host after the unmerge: %s' % err
        return outcome


# Counters that must all read 0 once everything is unmerged.
SHARING_COUNTERS = ('pages_shared', 'pages_sharing', 'ksm_zero_pages')


def sharing_left(state):
    """[(counter, value)] of the sharing counters that are not 0: empty when nothing is merged."""
    return [(name, state[name]) for name in SHARING_COUNTERS if state.get(name)]


class ChangePlan:
    """One change of KSM state, decided from one reading before anything is written (Ksm.plan_change;
    Ksm.plan_unmerge makes its subclass UnmergePlan), reported in check mode or made by Ksm.execute.

    state       the reading the plan was made from
    applied     {knob: kernel value} asked for and present on this kernel
    missing     knobs asked for that this kernel lacks (skipped with skip_missing)
    writes      [(knob, value)] in the kernel's order; an unmerge (run=2, preceded by run=0 when run
                reads 2) comes first when needed, and run is put back after the knobs
    unmerge     whether the change unmerges every page first
    busy        the knobs that need that unmerge (EBUSY while pages are shared)
    run_after   the run the change ends with
    predicted   the state after the writes, with the kernel's side effects
    memory      the MemoryVerdict of the unmerge, when it unmerges (plan_change refuses one that does not fit)
    unmerged    after execute(): {pages, bytes, duration} of the unmerge it made, if any
    """

    def __init__(self, state, applied, missing, writes, unmerge_if_busy, margin):
        self.state = state
        self.applied = applied
        self.missing = missing
        self.writes = list(writes)
        self.unmerge_if_busy = unmerge_if_busy
        self.margin = margin
        self.unmerge = False
        self.busy = []
        self.run_after = applied['run'] if 'run' in applied else state.get('run')
        self.predicted = dict(state)
        self.memory = None
        self.unmerged = None

    @property
    def changed(self):
        return bool(self.writes)

    def unmerge_figures(self):
        """{pages, bytes, duration: None} the planned unmerge would release (check mode)."""
        return unmerged_figures(self.state, None)

    def check_memory(self, state):
        """The memory check an unmerge for unmerge_if_busy needs: its MemoryVerdict, or KsmError with both figures."""
        budget = UnmergeBudget(self.margin if self.margin is not None else DEFAULT_MARGIN)
        verdict = budget.verdict(state, remedy='leave merge_across_nodes and max_page_sharing as they are until '
                                               'less is shared')
        if not verdict.ok:
            raise KsmError('unmerge_if_busy=true: %s' % verdict.error.msg, **verdict.error.details)
        return verdict


class UnmergePlan(ChangePlan):
    """The ChangePlan of ksm_unmerge (Ksm.plan_unmerge), made by Ksm.execute (execute_unmerge).

    available   whether this kernel has KSM (without it there is no state and nothing to do)
    wanted_run  2 (ksmd stopped, everything unmerged) or 1 (ksmd running again afterwards)
    memory      the MemoryVerdict: needed bytes, the budget, and the refusal when the unmerge does not fit
                (made for every plan, so that check mode reports it too; ok when nothing needs memory)
    outcome     after execute, also when it failed: the UnmergeOutcome, what really happened
    """

    def __init__(self, state, wanted_run, memory, available=True):
        ChangePlan.__init__(self, state, {'run': wanted_run}, [], [], False, None)
        self.available = available
        self.wanted_run = wanted_run
        self.memory = memory
        self.outcome = None


class UnmergeOutcome:
    """What an executed UnmergePlan did (its figures start as the plan's, as a success would make them).

    changed         whether the host is different now
    run_after       run read back afterwards (None when it could not be read after a failure)
    after           the state read back afterwards (None when it could not be read)
    pages, bytes    page mappings that received a private copy, and their bytes
    unmerged        whether an unmerge (run=2) completed and was verified
    duration        seconds the unmerge write took (0.0 without one)
    meminfo_after   /proc/meminfo after a successful run ({field: bytes}); None, with meminfo_error saying
                    why, when it could not be read
    """

    def __init__(self, plan):
        figures = plan.unmerge_figures() if plan.changed else unmerged_figures({}, None)
        self.before = plan.state
        self.changed = plan.changed
        self.run_after = plan.run_after
        self.after = None
        self.pages = figures['pages']
        self.bytes = figures['bytes']
        self.unmerged = False
        self.duration = 0.0
        self.meminfo_after = None
        self.meminfo_error = None

    def read_back_failure(self, ksm, wrote):
        """The figures of a run that failed half way, from the state read back; wrote: whether the kernel
        accepted any write of it."""
        try:
            self.after = ksm.read_state()
        except SamepageError:
            self.after = None
        if self.after is None:
            self.changed = wrote
            self.run_after = None
            return
        self.pages = max(0, unmerge_pages(self.before) - unmerge_pages(self.after))
        self.bytes = self.pages * page_size()
        self.run_after = self.after.get('run')
        self.changed = wrote or self.run_after != self.before.get('run') or self.pages > 0


class MemoryVerdict:
    """The memory check of an unmerge, decided before anything is written.

    needed      bytes the unmerge allocates ((pages_sharing + ksm_zero_pages) times the page size)
    budget      the UnmergeBudget it was judged against (meminfo, margin, bytes the unmerge may use)
    error       None when the unmerge fits, else the KsmError that refuses it, with both figures
    overridden  set by override(): the caller chose to unmerge although it does not fit (force=true)
    """

    def __init__(self, needed, budget, error=None):
        self.needed = needed
        self.budget = budget
        self.error = error
        self.overridden = False

    @property
    def ok(self):
        return self.error is None

    def override(self):
        """Unmerge even though the check refused it: the caller's explicit decision (and warning)."""
        self.overridden = True

    def require(self):
        """Raise the refusal unless the unmerge fits or the refusal was overridden."""
        if self.error is not None and not self.overridden:
            raise self.error


def unmerge_writes(state):
    """The writes Ksm.unmerge makes: run=2, preceded by run=0 when run already reads 2."""
    return ([('run', 0)] if state.get('run') == 2 else []) + [('run', 2)]


def busy_message(state, writes, busy):
    """Why a change of merge_across_nodes/max_page_sharing is refused while pages are shared, and the ways out."""
    changes = ', '.join('%s (%s -> %s)' % (name, encode(name, state.get(name)), encode(name, value))
                        for name, value in writes if name in busy)
    return ('Cannot change %s while KSM pages are shared (pages_shared=%s, pages_sharing=%s): the kernel refuses '
            'to change merge_across_nodes and max_page_sharing (EBUSY) until every KSM page is unmerged. Nothing '
            'was changed. Unmerge first with samepage.ksm.ksm_unmerge, or set unmerge_if_busy=true to let this '
            'task unmerge (run=2; it needs about %s of memory), make the change and put run back.'
            % (changes, state.get('pages_shared', 0), state.get('pages_sharing', 0),
               human_bytes(unmerge_cost(state))))


def unmerge_pages(state):
    """Page mappings an unmerge gives a private copy: pages_sharing + ksm_zero_pages."""
    return int(state.get('pages_sharing', 0)) + int(state.get('ksm_zero_pages', 0))


def unmerged_figures(state, duration):
    """{pages, bytes, duration} of an unmerge of state (duration None when it has not run)."""
    return dict(pages=unmerge_pages(state), bytes=unmerge_cost(state), duration=duration)


# ---------------------------------------------------------------------------------------------------
# Memory: what an unmerge needs and what the host has

def page_size():
    return os.sysconf('SC_PAGE_SIZE')


def unmerge_cost(state, page_bytes=None):
    """Bytes an unmerge allocates: a private copy for every sharing mapping and KSM zero-page mapping."""
    return unmerge_pages(state) * (page_bytes or page_size())


def read_meminfo(path=None):
    """/proc/meminfo as {field: bytes}."""
    info = {}
    with open(path or MEMINFO) as handle:
        for line in handle:
            field, dummy, rest = line.partition(':')
            parts = rest.split()
            if not parts:
                continue
            try:
                number = int(parts[0])
            except ValueError:
                continue
            info[field] = number * 1024 if len(parts) > 1 and parts[1] == 'kB' else number
    return info


# The memory_margin modules default to: 5 % of MemTotal kept free when judging an unmerge.
DEFAULT_MARGIN = '5%'

# A margin: a number (ASCII digits, an optional fraction) and an optional unit, blanks around them
# allowed; no line breaks, no unicode digits. fullmatch: `$` would also match before a final newline.
_MARGIN_RE = re.compile(r'[ \t]*([0-9]{1,15}(?:\.[0-9]{1,6})?)[ \t]*(%|(?:[kKmMgGtT]i?)?[bB]?)[ \t]*')
# The largest margin in bytes (8 EiB): beyond any memory, and safe for every sum made with it.
MARGIN_MAX = 2 ** 63 - 1


def parse_margin(text, mem_total):
    """A safety margin given as a percentage of MemTotal ("5%") or a size ("512M", "2GiB", "0").

    Returns bytes; raises KsmError naming the option memory_margin for anything else (other types,
    unicode digits, line breaks, more than 15 digits, more than MARGIN_MAX bytes).
    """
    match = None
    if isinstance(text, (str, int)) and not isinstance(text, bool):
        match = _MARGIN_RE.fullmatch(str(text))
    if not match:
        raise KsmError('Invalid memory margin %r (option memory_margin): expected a percentage of total memory '
                       'such as "5%%" or a size such as "512M" or "2G"' % (text,), option='memory_margin')
    number, unit = float(match.group(1)), match.group(2)
    if unit == '%':
        if number > 100:
            raise KsmError('Invalid memory margin %r (option memory_margin): a percentage cannot exceed 100%%'
                           % (text,),
                           option='memory_margin')
        return int(mem_total * number / 100)
    letter = unit[:1].lower()
    scale = {'k': 1024, 'm': 1024 ** 2, 'g': 1024 ** 3, 't': 1024 ** 4}.get(letter, 1)
    margin = int(number * scale)
    if margin > MARGIN_MAX:
        raise KsmError('Invalid memory margin %r (option memory_margin): more than %s' % (text, human_bytes(MARGIN_MAX)),
                       option='memory_margin')
    return margin


def unmerge_budget(meminfo, margin_bytes):
    """Memory an unmerge may use: MemAvailable plus free swap, less the safety margin."""
    return meminfo.get('MemAvailable', meminfo.get('MemFree', 0)) + meminfo.get('SwapFree', 0) - margin_bytes


def check_unmerge_fits(state, meminfo, margin_bytes, page_bytes=None, remedy='set force=true to unmerge anyway'):
    """Raise KsmError with both figures if an unmerge would not fit in memory; return (needed, budget).

    remedy ends the message: the way out the calling module offers besides freeing memory.
    """
    needed = unmerge_cost(state, page_bytes)
    budget = unmerge_budget(meminfo, margin_bytes)
    if needed > budget:
        raise KsmError(
            'Refusing to unmerge: it needs %s (pages_sharing=%s + ksm_zero_pages=%s pages) but only %s may '
            'be used (MemAvailable %s + SwapFree %s - safety margin %s). Unmerging now could make the OOM '
            'killer end guests. Free memory first, lower memory_margin, or %s.'
            % (human_bytes(needed), state.get('pages_sharing', 0), state.get('ksm_zero_pages', 0),
               human_bytes(max(budget, 0)), human_bytes(meminfo.get('MemAvailable', 0)),
               human_bytes(meminfo.get('SwapFree', 0)), human_bytes(margin_bytes), remedy),
            needed_bytes=needed, budget_bytes=budget)
    return needed, budget


class UnmergeBudget:
    """The memory an unmerge may use on this host, as both unmerging modules judge it.

    Reads /proc/meminfo once (meminfo may be given instead) and resolves the memory_margin option
    against MemTotal; raises KsmError naming the option or the unreadable file.
    """

    def __init__(self, margin_text, meminfo=None):
        if meminfo is None:
            try:
                meminfo = read_meminfo()
            except OSError as err:
                raise KsmError('Cannot read the memory figures of the host (%s): %s' % (MEMINFO, err))
        self.meminfo = meminfo
        self.margin = parse_margin(margin_text, meminfo.get('MemTotal', 0))
        self.budget = unmerge_budget(meminfo, self.margin)

    def check(self, state, page_bytes=None, remedy='set force=true to unmerge anyway'):
        """check_unmerge_fits against these figures: (needed, budget), or KsmError with both figures."""
        return check_unmerge_fits(state, self.meminfo, self.margin, page_bytes, remedy)

    def verdict(self, state, page_bytes=None, remedy='set force=true to unmerge anyway'):
        """The MemoryVerdict of an unmerge of state: check() as data, the refusal kept rather than raised."""
        try:
            self.check(state, page_bytes, remedy)
        except KsmError as err:
            return MemoryVerdict(unmerge_cost(state, page_bytes), self, err)
        return MemoryVerdict(unmerge_cost(state, page_bytes), self)


def human_bytes(number):
    number = float(number)
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(number) < 1024 or unit == 'TiB':
            return ('%d %s' % (number, unit)) if unit == 'B' else ('%.1f %s' % (number, unit))
        number /= 1024
    return '%d B' % number  # pragma: no cover


# ---------------------------------------------------------------------------------------------------
# Host facts that decide KSM policy

def kernel_release():
    return os.uname()[2]


def parse_cpulist(text):
    """Kernel list format ("0-1,4") as a sorted list of integers."""
    nodes = set()
    for part in text.strip().split(','):
        if not part:
            continue
        first, dummy, last = part.partition('-')
        nodes.update(range(int(first), int(last or first) + 1))
    return sorted(nodes)


def numa_nodes_with_memory(node_dir=None):
    """NUMA nodes that hold memory. A kernel without NUMA has one node, 0."""
    node_dir = node_dir or NODE_DIR
    path = os.path.join(node_dir, 'has_memory')
    if not os.path.exists(path):
        path = os.path.join(node_dir, 'has_normal_memory')
    try:
        with open(path) as handle:
            return parse_cpulist(handle.read()) or [0]
    except (OSError, ValueError):  # absent, or not in the kernel list format
        return [0]


# ---------------------------------------------------------------------------------------------------
# ksmd, the kernel thread that scans: its CPU

PF_KTHREAD = 0x00200000     # include/linux/sched.h: the flags field of /proc/<pid>/stat says "kernel thread"


def clock_ticks():
    """Clock ticks per second of /proc/<pid>/stat's times (USER_HZ)."""
    try:
        return os.sysconf('SC_CLK_TCK')
    except (ValueError, OSError):  # pragma: no cover
        return 100


def _stat_fields(text):
    """The fields of a /proc/<pid>/stat line after "pid (comm) " (the comm may hold spaces and parentheses):
    index 0 is the state (field 3 of proc(5)), so field N of proc(5) is index N - 3."""
    return text[text.rindex(')') + 2:].split()


def find_ksmd(proc_dir=None):
    """Process id of the ksmd kernel thread, or None: the lowest pid whose comm is ksmd and whose stat flags
    say kernel thread (a user process may call itself ksmd)."""
    proc_dir = proc_dir or PROC_DIR
    for pid in sorted(int(entry) for entry in os.listdir(proc_dir) if entry.isdigit()):
        base = os.path.join(proc_dir, str(pid))
        try:
            with open(os.path.join(base, 'comm')) as handle:
                if handle.read().strip() != 'ksmd':
                    continue
            with open(os.path.join(base, 'stat')) as handle:
                flags = int(_stat_fields(handle.read())[6])
        except (OSError, ValueError, IndexError):
            continue
        if flags & PF_KTHREAD:
            return pid
    return None


def process_cpu_seconds(pid, proc_dir=None, ticks=None):
    """CPU seconds a process has used (utime + stime, fields 14 and 15 of /proc/<pid>/stat); OSError when
    it is gone, ValueError when the line cannot be parsed."""
    with open(os.path.join(proc_dir or PROC_DIR, str(pid), 'stat')) as handle:
        text = handle.read()
    try:
        fields = _stat_fields(text)
        return (int(fields[11]) + int(fields[12])) / float(ticks or clock_ticks())
    except IndexError:
        raise ValueError('not a /proc/<pid>/stat line: %r' % text[:200])


def read_ksmd(proc_dir=None):
    """{pid, cpu_seconds, source} of ksmd (cpu_seconds: utime + stime since boot, a counter), or None when
    no ksmd thread is found (a kernel without KSM, or a /proc that hides kernel threads)."""
    proc_dir = proc_dir or PROC_DIR
    pid = find_ksmd(proc_dir)
    if pid is None:
        return None
    ticks = clock_ticks()
    try:
        seconds = process_cpu_seconds(pid, proc_dir, ticks)
    except (OSError, ValueError):
        return None
    return {'pid': pid, 'cpu_seconds': round(seconds, 2),
            'source': '%s/%d/stat: utime + stime, in clock ticks of 1/%d s' % (proc_dir, pid, ticks)}


def merge_across_nodes_for(policy, nodes):
    """The merge_across_nodes value a NUMA merge policy means on a host with these memory nodes.

    auto keeps a separate tree per node (0) where more than one node holds memory, so KSM never places
    the single copy of a page on a remote node; one node has nothing to separate (1).
    """
    if policy == 'always':
        return 1
    if policy == 'never':
        return 0
    if policy == 'auto':
        return 0 if len(nodes) > 1 else 1
    raise KsmError('Invalid NUMA merge policy %r: expected auto, always or never' % (policy,),
                   option='merge_across_nodes')


def parse_ksm_stat(text):
    """/proc/<pid>/ksm_stat as {field: value}: integers, and booleans for the "key: yes/no" lines (6.14+).

    Lines this collection does not know are kept (as integers, or as text when not a number); an empty
    file (a kernel thread, a process without memory) gives {}.
    """
    stats = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        key, value = parts
        key = key.rstrip(':')  # "ksm_merge_any: yes" (6.14+) has a colon, the numeric lines do not
        if value in ('yes', 'no'):
            stats[key] = value == 'yes'
        else:
            try:
                stats[key] = int(value)
            except ValueError:
                stats[key] = value
    return stats


PER_PROCESS_FILES = ('ksm_stat', 'ksm_merging_pages')


def per_process_files(proc_dir=None):
    """Which per-process KSM files this kernel has (looked up on /proc/self)."""
    base = os.path.join(proc_dir or PROC_DIR, 'self')
    return [name for name in PER_PROCESS_FILES if os.path.exists(os.path.join(base, name))]
