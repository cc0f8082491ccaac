# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A process holding memory that KSM can merge: private anonymous pages, madvised MADV_MERGEABLE.

From tests:

    with MergeableWorkload(mib=32) as workload:     # child process, workload.pid
        counters = workload.wait_for_sharing(1, timeout=120)

Standalone (the lab copies this file into guests; standard library only, Python 3.8+):

    python3 merge_workload.py --mib 64 [--pattern same|unique|paired|zero] [--churn PAGES_PER_S]
                              [--seconds N] [--pidfile PATH] [--merge-any]

prints "ready pid=<pid> mib=<n> pattern=<p>" once the memory is filled and holds it until SIGTERM or
SIGINT (or N seconds, or end of standard input with --until-eof).

Patterns: `same` fills every page with one repeated non-zero page (all pages merge into one KSM page),
`unique` gives every page different content (nothing merges), `paired` gives every page of a process
different content but the same as the page at the same offset of every other `paired` process (two of
them merge pairwise), `zero` leaves pages zero-filled but touched (they merge into the zero page with
use_zero_pages=1, otherwise into one KSM page).

Churn (`--churn N`): once ready, the process rewrites N pages a second for as long as it runs, walking
through its memory: every other page gets new unique content (it can never merge), the ones between get
the pattern's content again (they merge again). Merged pages that are written break their sharing
(copy on write), so ksmd always has work to do: the workload of a guest whose memory keeps changing.

Merge any (`--merge-any`, Linux 6.4+): instead of madvise(MADV_MERGEABLE) on its area, the process opts in
as a whole with prctl(PR_SET_MEMORY_MERGE, 1), as systemd's MemoryKSM= does for a unit; the kernel then
shows `ksm_merge_any: yes` in /proc/<pid>/ksm_stat.
"""

import argparse
import ctypes
import ctypes.util
import mmap
import os
import signal
import subprocess
import sys
import time

PAGE = mmap.PAGESIZE
PATTERNS = ('same', 'unique', 'paired', 'zero')
KSM_DIR = '/sys/kernel/mm/ksm'
READY = 'ready'
PR_SET_MEMORY_MERGE = 67    # include/uapi/linux/prctl.h (Linux 6.4)


def merge_any():
    """prctl(PR_SET_MEMORY_MERGE, 1): every compatible area of this process becomes mergeable (OSError if refused)."""
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
    if libc.prctl(PR_SET_MEMORY_MERGE, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, 'prctl(PR_SET_MEMORY_MERGE, 1): %s' % os.strerror(code))


def _page(pattern, index):
    if pattern == 'same':
        return (b'samepage.ksm mergeable page ' * (PAGE // 28 + 1))[:PAGE]
    if pattern == 'unique':
        stamp = ('%d:%d:' % (os.getpid(), index)).encode('ascii')
        return (stamp * (PAGE // len(stamp) + 1))[:PAGE]
    if pattern == 'paired':
        # Distinct within a process, equal page for page between any two processes of this pattern.
        stamp = ('paired:%d:' % index).encode('ascii')
        return (stamp * (PAGE // len(stamp) + 1))[:PAGE]
    return b'\0' * PAGE


def fill(mib, pattern='same', madvise=True):
    """Map mib MiB private anonymous memory, mark it mergeable (unless madvise is false: the process opted in
    as a whole), fill it; return the mmap object."""
    if pattern not in PATTERNS:
        raise ValueError('pattern must be one of %s' % ', '.join(PATTERNS))
    size = int(mib) * 1024 * 1024
    area = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                     prot=mmap.PROT_READ | mmap.PROT_WRITE)
    if madvise:
        area.madvise(mmap.MADV_MERGEABLE)
    pages = size // PAGE
    if pattern in ('unique', 'paired'):
        for index in range(pages):
            area[index * PAGE:(index + 1) * PAGE] = _page(pattern, index)
    else:
        chunk_pages = 256
        chunk = _page(pattern, 0) * chunk_pages
        for first in range(0, pages, chunk_pages):
            count = min(chunk_pages, pages - first)
            area[first * PAGE:(first + count) * PAGE] = chunk[:count * PAGE]
    return area


def read_counters(ksm_dir=KSM_DIR):
    """KSM counters, through the collection's module_utils when importable (tests), else directly."""
    try:
        from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
    except ImportError:     # standalone copy in a lab guest
        _ksm = None
    if _ksm is not None:
        return _ksm.Ksm(_ksm.SysfsIO(ksm_dir)).read_state()
    state = {}
    for name in ('run', 'pages_shared', 'pages_sharing', 'pages_unshared', 'full_scans', 'ksm_zero_pages'):
        try:
            with open(os.path.join(ksm_dir, name)) as handle:
                state[name] = int(handle.read().strip())
        except (OSError, ValueError):
            continue
    return state


def process_merging_pages(pid):
    """Pages of one process currently merged (/proc/<pid>/ksm_merging_pages, Linux 5.19+), or None."""
    try:
        with open('/proc/%d/ksm_merging_pages' % pid) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def wait_for_sharing(min_pages_sharing=1, timeout=120, pid=None, interval=0.2, ksm_dir=KSM_DIR):
    """Wait until pages_sharing >= min_pages_sharing (and, with pid, that process has merged pages).

    Returns the counters. Raises TimeoutError saying what was seen (and that ksmd must be running).
    """
    deadline = time.time() + timeout
    while True:
        state = read_counters(ksm_dir)
        merged = process_merging_pages(pid) if pid else None
        if state.get('pages_sharing', 0) >= min_pages_sharing and (not pid or merged is None or merged > 0):
            return state
        if time.time() >= deadline:
            raise TimeoutError(
                'KSM did not reach pages_sharing >= %d within %s s: run=%s pages_shared=%s pages_sharing=%s '
                'full_scans=%s%s (ksmd merges only with run=1, and only after two full scans)'
                % (min_pages_sharing, timeout, state.get('run'), state.get('pages_shared'),
                   state.get('pages_sharing'), state.get('full_scans'),
                   '' if merged is None else ', ksm_merging_pages of %s=%s' % (pid, merged)))
        time.sleep(interval)


class MergeableWorkload:
    """Context manager: a child process holding `mib` MiB of mergeable memory (`.pid`)."""

    def __init__(self, mib=64, pattern='same', python=None, start_timeout=120, churn=0, merge_any=False):
        if pattern not in PATTERNS:
            raise ValueError('pattern must be one of %s' % ', '.join(PATTERNS))
        self.mib = mib
        self.pattern = pattern
        self.churn = churn
        self.merge_any = merge_any
        self.python = python or sys.executable
        self.start_timeout = start_timeout
        self.process = None
        self.pid = None

    def start(self):
        command = [self.python, os.path.abspath(__file__), '--mib', str(self.mib), '--pattern', self.pattern]
        command += ['--merge-any'] if self.merge_any else []
        # A churning child is busy writing, so it is stopped by SIGTERM; the others end at end of input.
        command += ['--churn', str(self.churn)] if self.churn else ['--until-eof']
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.process.stdout.readline().decode('ascii', 'replace')
        if not line.startswith(READY):
            self.stop()
            raise RuntimeError('merge workload did not start (%r): %s' % (line, ' '.join(command)))
        self.pid = self.process.pid
        return self

    def merging_pages(self):
        return process_merging_pages(self.pid)

    def wait_for_sharing(self, min_pages_sharing=1, timeout=120):
        return wait_for_sharing(min_pages_sharing, timeout, pid=self.pid)

    def stop(self):
        if self.process is None:
            return
        # Imported here: the lab copies this file alone into its guests, where only main() runs.
        from ansible_collections.samepage.ksm.tests.support.host_packages import end_process
        try:
            end_process(self.process)   # closes stdin first: a child with --until-eof ends on its own
        finally:
            self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
        return False


def churn(area, pattern, pages_per_second, until=None):
    """Rewrite pages_per_second pages a second (see the module's docstring) until time.time() >= until."""
    pages = len(area) // PAGE
    step = 0.05                                   # rewrite in small batches, 20 a second
    batch = max(1, int(round(pages_per_second * step)))
    index, serial = 0, 0
    while until is None or time.time() < until:
        started = time.time()
        for dummy in range(batch):
            if index % 2:
                serial += 1
                stamp = ('churn:%d:%d:' % (os.getpid(), serial)).encode('ascii')
                content = (stamp * (PAGE // len(stamp) + 1))[:PAGE]
            else:
                content = _page(pattern, index)
            area[index * PAGE:(index + 1) * PAGE] = content
            index = (index + 1) % pages
        time.sleep(max(0.0, step - (time.time() - started)))


def _exit_on_signal(signum, frame):
    raise SystemExit(0)


def main(argv=None):
    parser = argparse.ArgumentParser(description='Hold memory that KSM can merge.')
    parser.add_argument('--mib', type=int, default=64, help='size of the mergeable area (MiB)')
    parser.add_argument('--pattern', choices=PATTERNS, default='same')
    parser.add_argument('--seconds', type=float, default=None, help='exit after this long (default: never)')
    parser.add_argument('--until-eof', action='store_true', help='exit at end of standard input')
    parser.add_argument('--pidfile', help='write the process id here once the memory is filled')
    parser.add_argument('--merge-any', action='store_true',
                        help='opt in as a whole with prctl(PR_SET_MEMORY_MERGE) instead of madvise(MADV_MERGEABLE)')
    parser.add_argument('--churn', type=int, default=0, metavar='PAGES_PER_S',
                        help='once ready, rewrite this many pages a second (half unique, half the pattern again)')
    options = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)

    if options.merge_any:
        merge_any()
    area = fill(options.mib, options.pattern, madvise=not options.merge_any)
    if options.pidfile:
        with open(options.pidfile, 'w') as handle:
            handle.write('%d\n' % os.getpid())
    sys.stdout.write('%s pid=%d mib=%d pattern=%s\n' % (READY, os.getpid(), options.mib, options.pattern))
    sys.stdout.flush()
    try:
        if options.churn > 0:
            churn(area, options.pattern, options.churn,
                  None if options.seconds is None else time.time() + options.seconds)
        elif options.until_eof:
            while sys.stdin.buffer.read(4096):
                continue
        elif options.seconds is None:
            while True:
                signal.pause()
        else:
            time.sleep(options.seconds)
    finally:
        area.close()
        if options.pidfile:
            try:
                os.unlink(options.pidfile)
            except OSError:
                pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
