# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A fake /sys/kernel/mm/ksm that answers like the real kernel.

``FakeKsmKernel`` is a drop-in for ``_ksm.SysfsIO`` (``root``, ``available()``, ``names()``,
``exists(name)``, ``read(name)``, ``write(name, data)``). Every write goes through the parser the
kernel uses for that file (``kstrtouint``, ``kstrtoul``, ``kstrtoint``, ``kstrtobool``,
``sysfs_streq``, reproduced from ``lib/kstrtox.c`` and ``lib/string.c``) and the store function's
rules from ``mm/ksm.c``, and fails with the errno the kernel gives, so code tested against it meets
the same answers on a host. tests/system/test_fake_matches_kernel.py writes the same inputs to the
real files and to this fake and compares the outcomes, which keeps it honest.

Standard library only, Python 3.8 syntax.
"""

import errno
import os

UINT_MAX = 2 ** 32 - 1
ULLONG_MAX = 2 ** 64 - 1
LLONG_MAX = 2 ** 63 - 1
INT_MAX = 2 ** 31 - 1
INT_MIN = -2 ** 31
PAGE_SIZE = 4096

# The files of each kernel generation (feature-detected by existence, as the real code must).
FILES_6_18 = (
    'advisor_max_cpu', 'advisor_max_pages_to_scan', 'advisor_min_pages_to_scan', 'advisor_mode',
    'advisor_target_scan_time', 'full_scans', 'general_profit', 'ksm_zero_pages', 'max_page_sharing',
    'merge_across_nodes', 'pages_scanned', 'pages_shared', 'pages_sharing', 'pages_skipped',
    'pages_to_scan', 'pages_unshared', 'pages_volatile', 'run', 'sleep_millisecs', 'smart_scan',
    'stable_node_chains', 'stable_node_chains_prune_millisecs', 'stable_node_dups', 'use_zero_pages',
)
_NOT_IN_6_1 = ('advisor_max_cpu', 'advisor_max_pages_to_scan', 'advisor_min_pages_to_scan', 'advisor_mode',
               'advisor_target_scan_time', 'smart_scan', 'general_profit', 'ksm_zero_pages',
               'pages_scanned', 'pages_skipped')
FILES_6_1 = tuple(name for name in FILES_6_18 if name not in _NOT_IN_6_1)
# Linux 3.9 to 4.10 (e.g. Debian 9's 4.9): before use_zero_pages (4.11) and max_page_sharing (4.13).
FILES_4_X = ('full_scans', 'merge_across_nodes', 'pages_shared', 'pages_sharing', 'pages_to_scan',
             'pages_unshared', 'pages_volatile', 'run', 'sleep_millisecs')

PRESETS = {
    '6.18': FILES_6_18,                 # this machine
    '6.12': FILES_6_18,                 # Debian 13: the same 24 files
    '6.1': FILES_6_1,                   # Debian 12: 14 files
    '4.x': FILES_4_X,                   # 9 files
    'no-numa': tuple(name for name in FILES_6_18 if name != 'merge_across_nodes'),  # CONFIG_NUMA=n
    'absent': (),                       # CONFIG_KSM=n: no directory at all
}
MODES = (None, 'readonly', 'unprivileged')

WRITABLE = frozenset((
    'run', 'pages_to_scan', 'sleep_millisecs', 'merge_across_nodes', 'max_page_sharing', 'use_zero_pages',
    'stable_node_chains_prune_millisecs', 'smart_scan', 'advisor_mode', 'advisor_max_cpu',
    'advisor_min_pages_to_scan', 'advisor_max_pages_to_scan', 'advisor_target_scan_time',
))

# Kernel defaults (mm/ksm.c), and the starting values of this machine.
DEFAULTS = {
    'run': 0, 'pages_to_scan': 100, 'sleep_millisecs': 20, 'merge_across_nodes': 1, 'max_page_sharing': 256,
    'use_zero_pages': 0, 'smart_scan': 1, 'advisor_mode': 'none', 'advisor_max_cpu': 70,
    'advisor_min_pages_to_scan': 500, 'advisor_max_pages_to_scan': 30000, 'advisor_target_scan_time': 200,
    'stable_node_chains_prune_millisecs': 2000,
    'full_scans': 0, 'general_profit': 0, 'ksm_zero_pages': 0, 'pages_scanned': 0, 'pages_shared': 0,
    'pages_sharing': 0, 'pages_skipped': 0, 'pages_unshared': 0, 'pages_volatile': 0,
    'stable_node_chains': 0, 'stable_node_dups': 0,
}

DEFAULT_PAGES_TO_SCAN = 100   # what pages_to_scan becomes when advisor_mode returns to none


def _error(code, path):
    return OSError(code, os.strerror(code), path)


class KernelError(Exception):
    """A negative return of a kernel parse helper: .errno is the errno it returns."""

    def __init__(self, code):
        super().__init__(code)
        self.errno = code


# ---------------------------------------------------------------------------------------------------
# lib/kstrtox.c, base 10, on a 64-bit kernel

def _parse_integer(s):
    """_parse_integer(): (value, digits consumed, overflowed). Stops at the first non-digit."""
    value = 0
    count = 0
    for char in s:
        if not '0' <= char <= '9':
            break
        value = value * 10 + ord(char) - ord('0')
        count += 1
    return value, count, value > ULLONG_MAX


def _kstrtoull(s):
    value, count, overflow = _parse_integer(s)
    if overflow:
        return -errno.ERANGE   # checked before the rest: "99999999999999999999x" is ERANGE
    if count == 0:
        return -errno.EINVAL
    rest = s[count:]
    if rest.startswith('\n'):
        rest = rest[1:]
    if rest:
        return -errno.EINVAL
    return value


def kstrtoull(s):
    if s.startswith('+'):
        s = s[1:]
    return _kstrtoull(s)


def kstrtoul(s):
    return kstrtoull(s)


def kstrtouint(s):
    value = kstrtoull(s)
    if value < 0:
        return value
    if value > UINT_MAX:
        return -errno.ERANGE
    return value


def kstrtoint(s):
    """kstrtoll() then the int range check. Returns (ok, value or -errno)."""
    if s.startswith('-'):
        tmp = _kstrtoull(s[1:])
        if tmp < 0:
            return False, tmp
        if tmp > LLONG_MAX + 1:
            return False, -errno.ERANGE
        value = -tmp
    else:
        tmp = kstrtoull(s)
        if tmp < 0:
            return False, tmp
        if tmp > LLONG_MAX:
            return False, -errno.ERANGE
        value = tmp
    if not INT_MIN <= value <= INT_MAX:
        return False, -errno.ERANGE
    return True, value


def kstrtobool(s):
    """kstrtobool(): decided by the first one or two characters. Returns True, False or None (EINVAL)."""
    first = s[:1]
    if first in ('y', 'Y', 't', 'T', '1'):
        return True
    if first in ('n', 'N', 'f', 'F', '0'):
        return False
    if first in ('o', 'O'):
        second = s[1:2]
        if second in ('n', 'N'):
            return True
        if second in ('f', 'F'):
            return False
    return None


def sysfs_streq(s1, s2):
    """lib/string.c: equal, ignoring one trailing newline on either side."""
    def chop(text):
        return text[:-1] if text.endswith('\n') else text
    return chop(s1) == chop(s2)


# ---------------------------------------------------------------------------------------------------

class FakeKsmKernel:
    """/sys/kernel/mm/ksm of one kernel generation, in memory.

    preset: '6.18', '6.12', '6.1', '4.x', 'no-numa' or 'absent' (see PRESETS).
    mode: None (root), 'readonly' (sysfs mounted read-only: every write EROFS) or 'unprivileged'
    (not root: every write EACCES).
    values: starting values that differ from the kernel defaults (e.g. advisor_mode='scan-time').

    Attributes for tests:
      writes             every write attempted on an existing file, in order: [(name, data)]
      failures           the writes that failed: [(name, data, errno)]
      unmerge_error      None, errno.ENOMEM or errno.EINTR: run=2 fails like an unmerge that ran out
                         of memory or was interrupted (run becomes 0, counters unchanged)
      stale_stable_nodes True: merge_across_nodes/max_page_sharing changes fail with EBUSY even with
                         pages_shared == 0 (exited processes left stable nodes) until run=2
      after_write        None or a callable(fake, name, data) run after each successful write: for what
                         happens next on a live host (another writer, ksmd merging again)
    """

    def __init__(self, preset='6.18', mode=None, root='/sys/kernel/mm/ksm', **values):
        if preset not in PRESETS:
            raise ValueError('unknown preset %r: expected one of %s' % (preset, ', '.join(sorted(PRESETS))))
        if mode not in MODES:
            raise ValueError('unknown mode %r: expected readonly or unprivileged' % (mode,))
        self.root = root
        self.preset = preset
        self.mode = mode
        self.present = preset != 'absent'
        self.values = {name: DEFAULTS[name] for name in PRESETS[preset]}
        for name, value in values.items():
            if name not in self.values:
                raise ValueError('%s does not exist in preset %s' % (name, preset))
            self.values[name] = value
        self.writes = []
        self.failures = []
        self.unmerge_error = None
        self.stale_stable_nodes = False
        self.unmerges = 0
        self.after_write = None
        self._injected = {}

    # -- test helpers ------------------------------------------------------------------------------
    def share(self, pages_shared, pages_sharing, ksm_zero_pages=0):
        """Pretend ksmd merged pages: sets the counters (those this generation has)."""
        figures = {'pages_shared': pages_shared, 'pages_sharing': pages_sharing, 'ksm_zero_pages': ksm_zero_pages}
        for name, value in figures.items():
            if name in self.values:
                self.values[name] = value
        if 'general_profit' in self.values:
            self.values['general_profit'] = (pages_sharing + ksm_zero_pages) * PAGE_SIZE
        if pages_shared:
            self.values['full_scans'] = max(self.values.get('full_scans', 0), 2)

    def inject(self, name, code, times=1):
        """Fail the next `times` writes of name with errno code: for failures the kernel can produce but
        this fake cannot derive (ENOMEM allocating per-node trees, a security module, a race)."""
        self._injected[name] = (code, times)

    def settings(self):
        """The writable values, as {name: int or str}: compare before and after a failed apply."""
        return {name: value for name, value in self.values.items() if name in WRITABLE}

    def snapshot(self):
        return dict(self.values)

    def successful_writes(self):
        failed = [(name, data) for name, data, dummy in self.failures]
        result = list(self.writes)
        for item in failed:
            result.remove(item)
        return result

    # -- the SysfsIO interface ---------------------------------------------------------------------
    def _path(self, name):
        return os.path.join(self.root, name)

    def available(self):
        return self.present

    def names(self):
        if not self.present:
            raise _error(errno.ENOENT, self.root)
        return sorted(self.values)

    def exists(self, name):
        return self.present and name in self.values

    def read(self, name):
        if not self.exists(name):
            raise _error(errno.ENOENT, self._path(name))
        value = self.values[name]
        if name == 'advisor_mode':
            return ('[none] scan-time' if value == 'none' else 'none [scan-time]') + '\n'
        return '%d\n' % value

    def write(self, name, data):
        """One open(O_WRONLY) + write(2), as _ksm.SysfsIO.write does (which raises EIO on a short write).

        Returns the number of bytes the kernel took.
        """
        if isinstance(data, bytes):
            data = data.decode('latin-1')
        else:
            data.encode('ascii')   # SysfsIO sends ASCII: anything else fails before the open, as there
        # open(2) without O_CREAT: a missing name is ENOENT (with O_CREAT, as `echo >` does, sysfs
        # answers EACCES instead); then the mount (EROFS) and the permission bits (EACCES).
        if not self.exists(name):
            raise _error(errno.ENOENT, self._path(name))
        if self.mode == 'readonly':
            raise _error(errno.EROFS, self._path(name))
        if self.mode == 'unprivileged' or name not in WRITABLE:
            raise _error(errno.EACCES, self._path(name))
        self.writes.append((name, data))
        try:
            written = self._write(name, data)
        except OSError as err:
            self.failures.append((name, data, err.errno))
            raise
        if self.after_write is not None:
            self.after_write(self, name, data)
        return written

    def _write(self, name, data):
        if not data:
            return 0      # sysfs_kf_write: a zero-length write reaches no store function
        if name in self._injected:
            code, times = self._injected[name]
            if times <= 1:
                del self._injected[name]
            else:
                self._injected[name] = (code, times - 1)
            raise _error(code, self._path(name))
        # kernfs hands at most one page to the store function, as a NUL-terminated string.
        buf = data[:PAGE_SIZE].split('\0', 1)[0]
        try:
            getattr(self, '_store_' + name)(buf)
        except KernelError as err:
            raise _error(err.errno, self._path(name))
        if len(data) > PAGE_SIZE:
            # the kernel took one page (and stored what it parsed); SysfsIO reports the short write
            raise OSError(errno.EIO, 'short write (%d of %d bytes)' % (PAGE_SIZE, len(data)))
        return len(data)

    # -- store functions of mm/ksm.c -----------------------------------------------------------------
    @staticmethod
    def _uint_or_einval(buf):
        value = kstrtouint(buf)
        if value < 0:
            raise KernelError(errno.EINVAL)
        return value

    @staticmethod
    def _ulong_or_einval(buf):
        value = kstrtoul(buf)
        if value < 0:
            raise KernelError(errno.EINVAL)
        return value

    def _busy(self):
        return bool(self.values.get('pages_shared')) or self.stale_stable_nodes

    def _store_run(self, buf):
        flags = self._uint_or_einval(buf)
        if flags > 2:
            raise KernelError(errno.EINVAL)
        if self.values['run'] == flags:
            return                 # the value in effect: nothing happens, not even a second unmerge
        self.values['run'] = flags
        if flags == 2:
            if self.unmerge_error is not None:
                # unmerge_and_remove_all_rmap_items() failed: run back to 0, counters as they were
                self.values['run'] = 0
                raise KernelError(self.unmerge_error)
            self.unmerges += 1
            for counter in ('pages_shared', 'pages_sharing', 'ksm_zero_pages', 'pages_unshared', 'pages_volatile',
                            'stable_node_chains', 'stable_node_dups', 'general_profit', 'full_scans'):
                if counter in self.values:
                    self.values[counter] = 0
            self.stale_stable_nodes = False

    def _store_pages_to_scan(self, buf):
        if self.values.get('advisor_mode', 'none') != 'none':
            raise KernelError(errno.EINVAL)        # checked before parsing: the advisor owns it
        self.values['pages_to_scan'] = self._uint_or_einval(buf)

    def _store_sleep_millisecs(self, buf):
        self.values['sleep_millisecs'] = self._uint_or_einval(buf)

    def _store_stable_node_chains_prune_millisecs(self, buf):
        self.values['stable_node_chains_prune_millisecs'] = self._uint_or_einval(buf)

    def _store_merge_across_nodes(self, buf):
        knob = kstrtoul(buf)
        if knob < 0:
            raise KernelError(-knob)               # ERANGE or EINVAL passed through
        if knob > 1:
            raise KernelError(errno.EINVAL)
        if self.values['merge_across_nodes'] != knob:
            if self._busy():
                raise KernelError(errno.EBUSY)
            self.values['merge_across_nodes'] = knob

    def _store_max_page_sharing(self, buf):
        ok, knob = kstrtoint(buf)
        if not ok:
            raise KernelError(-knob)
        if knob < 2:
            raise KernelError(errno.EINVAL)
        if self.values['max_page_sharing'] == knob:
            return
        if self._busy():
            raise KernelError(errno.EBUSY)
        self.values['max_page_sharing'] = knob

    def _store_bool(self, name, buf):
        value = kstrtobool(buf)
        if value is None:
            raise KernelError(errno.EINVAL)
        self.values[name] = int(value)

    def _store_use_zero_pages(self, buf):
        self._store_bool('use_zero_pages', buf)

    def _store_smart_scan(self, buf):
        self._store_bool('smart_scan', buf)

    def _store_advisor_mode(self, buf):
        if sysfs_streq('scan-time', buf):
            mode = 'scan-time'
        elif sysfs_streq('none', buf):
            mode = 'none'
        else:
            raise KernelError(errno.EINVAL)
        if self.values['advisor_mode'] != mode:
            # set_advisor_defaults()
            self.values['pages_to_scan'] = (self.values['advisor_min_pages_to_scan'] if mode == 'scan-time'
                                            else DEFAULT_PAGES_TO_SCAN)
        self.values['advisor_mode'] = mode

    def _store_advisor_max_cpu(self, buf):
        self.values['advisor_max_cpu'] = self._ulong_or_einval(buf) & UINT_MAX   # unsigned int field

    def _store_advisor_min_pages_to_scan(self, buf):
        self.values['advisor_min_pages_to_scan'] = self._ulong_or_einval(buf)

    def _store_advisor_max_pages_to_scan(self, buf):
        self.values['advisor_max_pages_to_scan'] = self._ulong_or_einval(buf)

    def _store_advisor_target_scan_time(self, buf):
        value = self._ulong_or_einval(buf)
        if value < 1:
            raise KernelError(errno.EINVAL)
        self.values['advisor_target_scan_time'] = value
