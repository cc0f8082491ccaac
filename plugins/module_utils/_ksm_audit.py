# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Who takes part in KSM, process by process, and what each QEMU guest would share: the audit of ksm_info.

Everything here is read from /proc, so it works with or without libvirt, on any host with KSM:

* /proc/<pid>/ksm_stat (Linux 6.1+; its lines grow with the kernel: rmap items, merging pages, profit,
  zero pages, and since about 6.14 ``ksm_merge_any`` and ``ksm_mergeable``), or
  /proc/<pid>/ksm_merging_pages (5.19+) where ksm_stat lacks the merged pages;
* /proc/<pid>/comm and /proc/<pid>/cmdline: whether the process is QEMU, the guest's name
  (``-name guest=NAME,...`` as libvirt writes it, or ``-name NAME``) and whether it runs with
  ``-machine ...,mem-merge=off`` (libvirt's ``<memoryBacking><nosharepages/></memoryBacking>``);
* /proc/<pid>/smaps (``mg`` in VmFlags: a mergeable area), only for QEMU processes and only on kernels
  whose ksm_stat does not say ``ksm_mergeable``.

The scan is bounded: at most ``max_read`` processes and ``max_seconds`` seconds; what it did not read is
said in ``ProcessScan.skipped``, so an empty result is never taken for more than it is.

The verdict per guest follows the kernel's admin guide (Documentation/admin-guide/mm/ksm.rst, "Monitoring
KSM profit"): a process gains from KSM about ``merging_pages x page size - rmap_items x sizeof(rmap_item)``;
once its rmap items per merging page exceed page size / sizeof(rmap_item) (64 on a 64-bit kernel with 4 KiB
pages) KSM costs it more than it saves, and madvise(MADV_MERGEABLE) should be dropped for it.

Private to samepage.ksm (leading underscore). Standard library only (and the collection's _ksm for the
ksm_stat format), Python 3.8+ syntax. The tuner daemon does not need it.
"""

import errno
import json
import os
import re
import struct
import time

from . import _ksm

# Defaults of the bounds (ksm_info's max_scan_processes and max_scan_seconds).
MAX_READ = 10000
MAX_SECONDS = 10
MAX_CMDLINE_BYTES = 256 * 1024    # a QEMU command line of libvirt is a few KiB
MAX_SMAPS_BYTES = 64 * 1024 * 1024

# sizeof(struct ksm_rmap_item) (mm/ksm.c): 64 bytes on 64-bit kernels, 32 on 32-bit ones.
RMAP_ITEM_BYTES = 64 if struct.calcsize('P') == 8 else 32

# Process names of QEMU: Debian/Ubuntu/Fedora qemu-system-<arch>, RHEL's /usr/libexec/qemu-kvm, Proxmox's
# /usr/bin/kvm. /proc/<pid>/comm holds at most 15 characters (qemu-system-x86).
_QEMU_PROGRAM = re.compile(r'^(qemu-system-[A-Za-z0-9_.-]*|qemu-kvm|kvm)$')

# Verdicts per guest (stable strings: playbooks compare them).
OPTED_OUT = 'opted-out'
OPTED_OUT_BUT_MERGEABLE = 'opted-out-but-mergeable'
MERGEABLE = 'mergeable'
SAVES = 'saves'
COSTS_MORE = 'costs-more-than-it-saves'
NOT_MERGEABLE = 'not-mergeable'
UNKNOWN = 'unknown'
VERDICTS = (OPTED_OUT, OPTED_OUT_BUT_MERGEABLE, MERGEABLE, SAVES, COSTS_MORE, NOT_MERGEABLE, UNKNOWN)

_OFF = ('off', 'no', 'false', 'n', 'f', '0')
_ON = ('on', 'yes', 'true', 'y', 't', '1')


def rmap_items_limit(page_bytes):
    """Rmap items per merging page above which KSM costs a process more than it saves (64 for 4 KiB pages)."""
    return max(1, page_bytes // RMAP_ITEM_BYTES)


# ---------------------------------------------------------------------------------------------------
# QEMU's command line

def split_options(text):
    """QEMU's option syntax "a=1,b=2" -> ['a=1', 'b=2']; a doubled comma is a literal comma ("a,,b")."""
    parts, current, index = [], [], 0
    while index < len(text):
        char = text[index]
        if char == ',':
            if text[index + 1:index + 2] == ',':
                current.append(',')
                index += 2
                continue
            parts.append(''.join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append(''.join(current))
    return parts


def _options(text, implied):
    """{key: value} of one option argument; the first element without '=' is the implied key's value."""
    result = {}
    for position, part in enumerate(split_options(text)):
        key, sep, value = part.partition('=')
        if sep:
            result[key] = value
        elif position == 0 and implied:
            result[implied] = part
    return result


def _switch(value):
    """True/False for QEMU's on/off spellings (and JSON booleans); None for anything else."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _OFF:
        return False
    if text in _ON:
        return True
    return None


def is_qemu(command, argv):
    """Whether a process is QEMU, by its program name (argv[0]) or, failing that, its comm."""
    if argv and _QEMU_PROGRAM.match(os.path.basename(argv[0])):
        return True
    return bool(command) and bool(_QEMU_PROGRAM.match(command) or command.startswith('qemu-system-'))


def parse_qemu_command_line(argv):
    """(guest name or None, mem_merge) from QEMU's arguments.

    The name: ``-name guest=NAME,debug-threads=on`` (libvirt) or ``-name NAME`` (the implied key is
    ``guest``). mem_merge: False when ``-machine``/``-M`` says ``mem-merge=off`` (the last -machine that
    sets it wins, as in QEMU), else True - QEMU's default. Both ``-opt`` and ``--opt`` are accepted, and
    ``-opt=value``.
    """
    name = None
    mem_merge = True
    index = 1
    while index < len(argv):
        arg = argv[index]
        option, value = arg, None
        if arg.startswith('--'):
            option = arg[1:]
        if '=' in option and option.startswith('-'):
            option, value = option.split('=', 1)
        if option in ('-name', '-machine', '-M'):
            if value is None:
                if index + 1 >= len(argv):
                    break
                value = argv[index + 1]
                index += 1
            if option == '-name':
                name = _options(value, 'guest').get('guest', name)
            else:
                setting = _machine_mem_merge(value)
                if setting is not None:
                    mem_merge = setting
        index += 1
    return name, mem_merge


def _machine_mem_merge(value):
    if value.lstrip().startswith('{'):
        try:
            options = json.loads(value)
        except ValueError:
            return None
        return _switch(options.get('mem-merge')) if isinstance(options, dict) and 'mem-merge' in options else None
    options = _options(value, 'type')
    return _switch(options['mem-merge']) if 'mem-merge' in options else None


# ---------------------------------------------------------------------------------------------------
# Verdict per guest

def verdict(guest, limit):
    """(verdict, reason) for one QEMU guest (a dict of ProcessScan.guests), after the kernel's rule."""
    merging = guest.get('merging_pages') or 0
    rmap_items = guest.get('rmap_items')
    mergeable = guest.get('mergeable')
    merge_any = guest.get('merge_any')
    shares = bool(mergeable or merging or rmap_items)
    if guest.get('mem_merge') is False:
        if shares:
            why = (' - it opted in as a whole (prctl PR_SET_MEMORY_MERGE or systemd MemoryKSM=, inherited from '
                   'the program that started it), which overrides mem-merge=off' if merge_any else '')
            return OPTED_OUT_BUT_MERGEABLE, (
                'runs with mem-merge=off, yet the kernel lists memory of it for merging (mergeable=%s, '
                'merging_pages=%d, rmap_items=%s)%s' % (_text(mergeable), merging, _text(rmap_items), why))
        if mergeable is None:
            return OPTED_OUT, ('runs with mem-merge=off; this kernel does not say whether any of its memory is '
                               'mergeable (no ksm_mergeable in ksm_stat, smaps not readable)')
        return OPTED_OUT, 'runs with mem-merge=off and has no mergeable memory: KSM never merges its RAM'
    if rmap_items is not None and rmap_items > limit * merging:
        ratio = '%d rmap items for %d merging pages' % (rmap_items, merging)
        return COSTS_MORE, ('%s (more than %d per merging page): KSM spends more on this guest than it saves; '
                            'opt it out (nosharepages) or expect its profit to stay negative' % (ratio, limit))
    if merging:
        if rmap_items is None:
            return SAVES, '%d pages merged (the kernel does not report its rmap items: the cost is unknown)' % merging
        return SAVES, '%d pages merged for %d rmap items (at most %d per merging page pays off)' % (
            merging, rmap_items, limit)
    if mergeable:
        return MERGEABLE, ('its RAM is registered for merging but nothing of it is merged now; it shares pages as '
                           'soon as ksmd runs (run=1) and finds duplicates')
    if mergeable is None:
        return UNKNOWN, ('this kernel does not say whether its memory is mergeable (no ksm_mergeable in ksm_stat, '
                         'smaps not readable) and nothing of it is merged')
    return NOT_MERGEABLE, 'the kernel lists no mergeable memory of it (its memory backends may say merge=off)'


def _text(value):
    return 'unknown' if value is None else str(value).lower() if isinstance(value, bool) else str(value)


# ---------------------------------------------------------------------------------------------------
# The bounded scan of /proc

class _Gone(Exception):
    """The process exited while it was read."""


class _Unreadable(Exception):
    """The process's files are not ours to read (another user's, without root)."""


def _read(path, limit=None):
    try:
        with open(path, 'rb') as handle:
            return handle.read(limit) if limit else handle.read()
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EPERM):
            raise _Unreadable()
        raise _Gone()


def read_ksm_stats(base):
    """{ksm_stat field: value} of one process (kernel-dependent fields), merged pages always included.

    Raises _Gone when the process is gone (or is a kernel without per-process files), _Unreadable when
    its files may not be read.
    """
    stats = {}
    try:
        stats = _ksm.parse_ksm_stat(_read(os.path.join(base, 'ksm_stat')).decode('ascii', 'replace'))
    except _Gone:
        if os.path.exists(os.path.join(base, 'ksm_stat')):
            raise
    if 'ksm_merging_pages' not in stats:
        # 5.19-6.0 have no ksm_stat; 6.1-6.3 have one without ksm_merging_pages.
        text = _read(os.path.join(base, 'ksm_merging_pages')).decode('ascii', 'replace').strip()
        try:
            stats['ksm_merging_pages'] = int(text or 0)
        except ValueError:
            raise _Gone()
    return stats


def read_cmdline(base):
    """argv of a process (empty for kernel threads and zombies)."""
    raw = _read(os.path.join(base, 'cmdline'), MAX_CMDLINE_BYTES)
    return [part.decode('utf-8', 'replace') for part in raw.split(b'\0')[:-1]] if raw else []


def smaps_mergeable(base):
    """Whether any area of the process is mergeable (``mg`` in VmFlags of /proc/<pid>/smaps), None if unreadable."""
    try:
        with open(os.path.join(base, 'smaps'), 'rb') as handle:
            read = 0
            for line in handle:
                read += len(line)
                if line.startswith(b'VmFlags:') and b' mg' in line:
                    return True
                if read > MAX_SMAPS_BYTES:
                    return None
    except OSError:
        return None
    return False


class ProcessScan:
    """The result of one bounded scan of /proc.

    rows        one dict per process that takes part in KSM (the keys of ksm_info's processes), QEMU
                processes with ``guest`` and ``mem_merge`` added
    guests      one dict per QEMU process, whether or not it takes part, with its verdict
    opted_in    {pid, command} of every process that opted in as a whole (ksm_merge_any)
    seen, read  processes listed in /proc, and read
    skipped     what the scan did not read or could not tell, as sentences
    """

    def __init__(self):
        self.rows = []
        self.guests = []
        self.opted_in = []
        self.seen = 0
        self.read = 0
        self.unreadable = 0
        self.skipped = []
        self.limit = None

    @property
    def complete(self):
        return not self.skipped

    def summary(self):
        """ksm_info's process_scan."""
        return {
            'processes_seen': self.seen,
            'processes_read': self.read,
            'taking_part': len(self.rows),
            'opted_in': list(self.opted_in),
            'complete': self.complete,
            'skipped': list(self.skipped),
            'rmap_items_per_merging_page_limit': self.limit,
        }


def _pids(proc_dir):
    pids = []
    for entry in os.listdir(proc_dir):
        if entry.isdigit():
            pids.append(int(entry))
    return sorted(pids)


def _takes_part(stats):
    return any((stats.get('ksm_merging_pages'), stats.get('ksm_rmap_items'), stats.get('ksm_zero_pages'),
                stats.get('ksm_mergeable'), stats.get('ksm_merge_any')))


def _row(pid, command, stats, page_bytes):
    merging = stats.get('ksm_merging_pages', 0)
    row = {'pid': pid, 'command': command, 'merging_pages': merging, 'merging_bytes': merging * page_bytes}
    for key, field in (('ksm_rmap_items', 'rmap_items'), ('ksm_zero_pages', 'zero_pages'),
                       ('ksm_process_profit', 'profit'), ('ksm_mergeable', 'mergeable'),
                       ('ksm_merge_any', 'merge_any')):
        if key in stats:
            row[field] = stats[key]
    return row


def _guest(pid, command, stats, name, mem_merge, base, page_bytes, limit):
    mergeable = stats.get('ksm_mergeable')
    if mergeable is None and stats:
        mergeable = smaps_mergeable(base)
    merging = stats.get('ksm_merging_pages', 0)
    rmap_items = stats.get('ksm_rmap_items')
    guest = {
        'pid': pid,
        'name': name,
        'command': command,
        'mem_merge': mem_merge,
        'mergeable': mergeable,
        'merge_any': stats.get('ksm_merge_any'),
        'merging_pages': merging,
        'merging_bytes': merging * page_bytes,
        'rmap_items': rmap_items,
        'zero_pages': stats.get('ksm_zero_pages'),
        'profit': stats.get('ksm_process_profit'),
        'rmap_items_per_merging_page': round(float(rmap_items) / merging, 2) if merging and rmap_items is not None
        else None,
    }
    guest['verdict'], guest['reason'] = verdict(guest, limit)
    return guest


def scan(proc_dir=None, page_bytes=None, max_read=MAX_READ, max_seconds=MAX_SECONDS, clock=time.monotonic):
    """Read /proc/<pid> of at most max_read processes within max_seconds; return a ProcessScan.

    Processes are read in pid order. Per process: its KSM figures and comm; its command line only when
    it takes part in KSM or is named like QEMU (a QEMU renamed with ``-name process=`` that does not take
    part is therefore not found). A process that exits while it is read is left out silently.
    """
    proc_dir = proc_dir or _ksm.PROC_DIR
    page_bytes = page_bytes or _ksm.page_size()
    result = ProcessScan()
    result.limit = rmap_items_limit(page_bytes)
    started = clock()
    pids = _pids(proc_dir)
    result.seen = len(pids)
    per_process = _ksm.per_process_files(proc_dir)
    merge_any_known = False
    for index, pid in enumerate(pids):
        if index >= max_read:
            result.skipped.append('%d of %d processes not read (pid %d and above): max_scan_processes=%d reached'
                                  % (len(pids) - index, len(pids), pid, max_read))
            break
        if clock() - started >= max_seconds:
            result.skipped.append('%d of %d processes not read (pid %d and above): max_scan_seconds=%s elapsed'
                                  % (len(pids) - index, len(pids), pid, max_seconds))
            break
        base = os.path.join(proc_dir, str(pid))
        try:
            stats = read_ksm_stats(base) if per_process else {}
            command = _read(os.path.join(base, 'comm')).decode('utf-8', 'replace').strip()
            takes_part = _takes_part(stats)
            argv = None
            if takes_part or is_qemu(command, None):
                try:
                    argv = read_cmdline(base)
                except _Gone:
                    argv = []
        except _Unreadable:
            result.read += 1
            result.unreadable += 1
            continue
        except _Gone:
            continue
        result.read += 1
        merge_any_known = merge_any_known or 'ksm_merge_any' in stats
        qemu = argv is not None and is_qemu(command, argv)
        name, mem_merge = parse_qemu_command_line(argv) if qemu and argv else (None, None)
        if takes_part:
            row = _row(pid, command, stats, page_bytes)
            if qemu and argv:
                row['guest'] = name
                row['mem_merge'] = mem_merge
            result.rows.append(row)
            if stats.get('ksm_merge_any'):
                result.opted_in.append({'pid': pid, 'command': command})
        if qemu:
            result.guests.append(_guest(pid, command, stats, name, mem_merge, base, page_bytes, result.limit))
    if result.unreadable:
        result.skipped.append('%d processes could not be read (another user\'s /proc/<pid> files need root: use '
                              'become)' % result.unreadable)
    if not per_process:
        result.skipped.append('this kernel has no per-process KSM files (/proc/<pid>/ksm_merging_pages, Linux 5.19+): '
                              'only QEMU processes and their command lines were looked at')
    elif result.read and not merge_any_known:
        result.skipped.append('this kernel does not say which processes opted in as a whole (ksm_merge_any in '
                              '/proc/<pid>/ksm_stat, about Linux 6.14+): opted_in cannot be known')
    result.rows.sort(key=lambda row: (-row['merging_pages'], -row.get('profit', 0), row['pid']))
    return result
