# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ksm_info's audit on this machine's real kernel: real QEMU guests and real processes, told apart.

Two tiny QEMU guests (32 MiB, CPU stopped, no devices, TCG) whose RAM is preallocated, one with
mem-merge=on and one with mem-merge=off (what libvirt's <nosharepages/> makes), a process that madvises
its memory mergeable and one that opts in as a whole with prctl(PR_SET_MEMORY_MERGE). ksmd merges, is
stopped (so the figures hold still), and ksm_info, run by the real `ansible`, must report each of them as
the kernel's own /proc/<pid>/ksm_stat does, with the right guest names and verdicts. Every process is
stopped by its pid and the host guard restores every KSM knob.
"""

import ctypes
import ctypes.util
import os
import subprocess
import time

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.tests.support.ansible_cli import run_module
from ansible_collections.samepage.ksm.tests.support.host_packages import end_process, require, which
from ansible_collections.samepage.ksm.tests.support.merge_workload import MergeableWorkload

pytestmark = pytest.mark.skipif(not os.path.isdir(_ksm.KSM_DIR), reason='this kernel has no KSM')

ALL = 100000            # max_processes that lists every process
GUEST_MIB = 32
WORKLOAD_MIB = 16
PR_SET_THP_DISABLE = 41


def proc_ksm_stat(pid):
    with open('/proc/%d/ksm_stat' % pid) as handle:
        return _ksm.parse_ksm_stat(handle.read())


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as handle:
        for line in handle:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def _small_pages_only():
    # In the child before exec: no transparent huge pages for QEMU's RAM, so that KSM sees (and merges) each
    # 4 KiB page of it rather than skipping huge pages; inherited over exec.
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
    libc.prctl(PR_SET_THP_DISABLE, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


class QemuGuest:
    """A tiny real QEMU guest: RAM preallocated (every page touched, zero-filled), CPU stopped (-S), no devices."""

    def __init__(self, name, mem_merge):
        self.name = name
        self.command = [which('qemu-system-x86_64'), '-name', 'guest=%s' % name,
                        '-machine', 'pc,mem-merge=%s' % ('on' if mem_merge else 'off'), '-accel', 'tcg',
                        '-m', str(GUEST_MIB), '-mem-prealloc', '-S', '-nodefaults', '-no-user-config',
                        '-display', 'none', '-monitor', 'none', '-serial', 'none']
        self.process = None
        self.pid = None

    def __enter__(self):
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, preexec_fn=_small_pages_only)
        self.pid = self.process.pid
        deadline = time.time() + 60
        while rss_kib(self.pid) < GUEST_MIB * 1024:
            if self.process.poll() is not None or time.time() > deadline:
                self.__exit__()
                raise RuntimeError('QEMU %s did not allocate its RAM: %s' % (self.name, ' '.join(self.command)))
            time.sleep(0.2)
        return self

    def __exit__(self, *exc_info):
        if self.process is None:
            return False
        end_process(self.process)
        self.process = None
        return False


@pytest.fixture(scope='module')
def qemu():
    reason = require({'qemu-system-x86_64': 'qemu-system-x86'})
    if reason:
        pytest.skip(reason)
    if 'ksm_merge_any' not in proc_ksm_stat(os.getpid()):
        pytest.skip('this kernel does not show ksm_merge_any/ksm_mergeable in /proc/<pid>/ksm_stat (about 6.14+)')


def wait_for_merging(pids, timeout=180):
    deadline = time.time() + timeout
    while True:
        merging = dict((pid, proc_ksm_stat(pid).get('ksm_merging_pages', 0)) for pid in pids)
        if all(merging.values()):
            return merging
        if time.time() > deadline:
            raise AssertionError('not every process merged within %d s: %r' % (timeout, merging))
        time.sleep(0.5)


def test_the_audit_tells_real_guests_and_processes_apart(qemu, ksm_host):
    with QemuGuest('samepage-audit-shares', mem_merge=True) as sharing, \
            QemuGuest('samepage-audit-opted-out', mem_merge=False) as opted_out, \
            MergeableWorkload(mib=WORKLOAD_MIB) as madvised, \
            MergeableWorkload(mib=WORKLOAD_MIB, merge_any=True) as prctl:
        ksm_host.set(run=1, pages_to_scan=5000)
        wait_for_merging([sharing.pid, madvised.pid, prctl.pid])
        ksm_host.set(run=0)       # merged pages stay merged; the figures hold still from here on
        kernel = dict((pid, proc_ksm_stat(pid)) for pid in (sharing.pid, opted_out.pid, madvised.pid, prctl.pid))
        with open('/proc/%d/cmdline' % opted_out.pid, 'rb') as handle:
            opted_out_argv = handle.read().split(b'\0')
        result = run_module('samepage.ksm.ksm_info', {'max_processes': ALL})
        checked = run_module('samepage.ksm.ksm_info', {'max_processes': ALL}, check=True)
        opted_out_rss = rss_kib(opted_out.pid)

    assert result['failed'] is False and result['changed'] is False, result.output
    assert checked['failed'] is False and checked['changed'] is False, checked.output
    page = result['capabilities']['page_size']

    # The kernel's own view first: the opted-out QEMU holds its RAM (every page touched) yet none of it is
    # mergeable, its command line says mem-merge=off; the other QEMU merges.
    assert b'pc,mem-merge=off' in opted_out_argv
    assert opted_out_rss >= GUEST_MIB * 1024
    assert kernel[opted_out.pid]['ksm_mergeable'] is False and kernel[opted_out.pid]['ksm_merging_pages'] == 0
    assert kernel[sharing.pid]['ksm_mergeable'] is True and kernel[sharing.pid]['ksm_merging_pages'] > 1000
    assert kernel[prctl.pid]['ksm_merge_any'] is True and kernel[madvised.pid]['ksm_merge_any'] is False

    guests = dict((guest['pid'], guest) for guest in result['guests'])
    shares, out = guests[sharing.pid], guests[opted_out.pid]
    assert shares['name'] == 'samepage-audit-shares' and out['name'] == 'samepage-audit-opted-out'
    assert shares['mem_merge'] is True and out['mem_merge'] is False
    assert out['mergeable'] is False and out['merging_pages'] == 0 and out['rmap_items'] == 0
    assert out['verdict'] == 'opted-out', out
    assert shares['mergeable'] is True and shares['merge_any'] is False
    stat = kernel[sharing.pid]
    assert (shares['merging_pages'], shares['rmap_items'], shares['profit'], shares['zero_pages']) == (
        stat['ksm_merging_pages'], stat['ksm_rmap_items'], stat['ksm_process_profit'], stat['ksm_zero_pages'])
    assert shares['merging_bytes'] == stat['ksm_merging_pages'] * page
    assert shares['verdict'] == 'saves', shares
    assert shares['rmap_items_per_merging_page'] <= result['process_scan']['rmap_items_per_merging_page_limit']
    # the workloads are no QEMU guests
    assert madvised.pid not in guests and prctl.pid not in guests

    rows = dict((row['pid'], row) for row in result['processes'])
    assert opted_out.pid not in rows                      # takes no part in KSM at all
    assert rows[sharing.pid]['guest'] == 'samepage-audit-shares' and rows[sharing.pid]['mem_merge'] is True
    for workload in (madvised, prctl):
        row, stat = rows[workload.pid], kernel[workload.pid]
        assert row['command'].startswith('python')
        assert (row['merging_pages'], row['rmap_items'], row['profit'], row['mergeable'], row['merge_any']) == (
            stat['ksm_merging_pages'], stat['ksm_rmap_items'], stat['ksm_process_profit'], stat['ksm_mergeable'],
            stat['ksm_merge_any'])
        assert 'guest' not in row
    scan = result['process_scan']
    assert {'pid': prctl.pid, 'command': rows[prctl.pid]['command']} in scan['opted_in']
    assert madvised.pid not in [entry['pid'] for entry in scan['opted_in']]
    assert scan['complete'] is True and scan['skipped'] == []
    assert scan['processes_read'] <= scan['processes_seen']

    # check mode reports the same guests
    checked_guests = dict((guest['pid'], guest) for guest in checked['guests'])
    assert checked_guests[opted_out.pid]['verdict'] == 'opted-out'
    assert checked_guests[sharing.pid]['verdict'] == 'saves'


def test_a_tight_bound_says_what_it_skipped():
    result = run_module('samepage.ksm.ksm_info', {'max_processes': ALL, 'max_scan_processes': 1})
    assert result['failed'] is False, result.output
    scan = result['process_scan']
    assert scan['processes_read'] <= 1 and scan['complete'] is False
    assert scan['processes_seen'] > 1
    assert any('max_scan_processes=1 reached' in text for text in scan['skipped']), scan['skipped']
