# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Issue #11 on this machine's real KSM: writers that overlap end as some serial order of them.

Two real `ansible` runs are started side by side (threads, each waiting on its own process), the second
a fraction of a second after the first, in both orders, with pages really merged by a workload. Without
the host lock (_ksm.host_lock) the issue saw ksmd left running: ksm_sysfs with unmerge_if_busy read
run=1, unmerged, and put back the run=1 it had read after the other run had written run=0.

A test also holds the lock itself: a writing module waits for its lock_timeout, then fails naming the
holder, having changed nothing; check mode does not wait.
"""

import os
import threading
import time

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.tests.support.ansible_cli import run_module
from ansible_collections.samepage.ksm.tests.support.ksm_host import writable_knobs
from ansible_collections.samepage.ksm.tests.support.merge_workload import MergeableWorkload

SYSFS = 'samepage.ksm.ksm_sysfs'
UNMERGE = 'samepage.ksm.ksm_unmerge'
WORKLOAD_MIB = 32
MIN_SHARING = 1000
DELAYS = (0.0, 0.4)     # seconds between the two starts: together, and the 0.4 s


def busy_knob(state):
    """A knob the kernel refuses to change while pages are shared: (option, args that change it, value)."""
    if 'merge_across_nodes' in state:
        return 'merge_across_nodes', {'merge_across_nodes': 'never'}, 0
    return 'max_page_sharing', {'max_page_sharing': 128}, 128


def side_by_side(first, second, delay):
    """Start `ansible` for first=(module, args), then `delay` s later for second; both results."""
    results = [None, None]

    def run(index, module, args):
        results[index] = run_module(module, args)

    threads = [threading.Thread(target=run, args=(0,) + first), threading.Thread(target=run, args=(1,) + second)]
    threads[0].start()
    time.sleep(delay)
    threads[1].start()
    for thread in threads:
        thread.join()
    return results


def merged_and_running(host, knob):
    """Pages merged with ksmd running (run=1), the busy knob at its default, the advisor off."""
    if host.state().get('pages_shared'):
        host.unmerge()
    defaults = {'merge_across_nodes': 1, 'max_page_sharing': 256}
    settings = {knob: defaults[knob], 'run': 1, 'pages_to_scan': 5000, 'sleep_millisecs': 10}
    if 'advisor_mode' in host.state():
        settings['advisor_mode'] = 'none'
    host.set(**settings)


def outcome(host, knob):
    state = host.state()
    return {'run': state['run'], 'pages_to_scan': state['pages_to_scan'], knob: state[knob]}


@pytest.mark.parametrize('delay', DELAYS)
@pytest.mark.parametrize('order', ['unmerging first', 'stopping first'])
def test_sysfs_with_unmerge_and_sysfs_stopping_ksmd_end_in_a_serial_order(ksm_host, order, delay):
    """The issue's example: ksm_sysfs merge_across_nodes=never unmerge_if_busy=true beside ksm_sysfs
    run=false pages_to_scan=3000. Either serial order ends with ksmd stopped (run 0), pages_to_scan=3000
    and the knob changed (run=1 at the end is the lost update)."""
    knob, knob_args, knob_value = busy_knob(ksm_host.state())
    merged_and_running(ksm_host, knob)
    unmerging = (SYSFS, dict(knob_args, unmerge_if_busy=True))
    stopping = (SYSFS, {'run': False, 'pages_to_scan': 3000})
    with MergeableWorkload(mib=WORKLOAD_MIB) as workload:
        workload.wait_for_sharing(MIN_SHARING, timeout=180)
        pair = (unmerging, stopping) if order == 'unmerging first' else (stopping, unmerging)
        results = side_by_side(pair[0], pair[1], delay)
        for result in results:
            assert result['failed'] is False, result.get('msg')
            assert result['changed'] is True, result
        serial_outcomes = [{'run': 0, 'pages_to_scan': 3000, knob: knob_value}]   # the same for both orders
        assert outcome(ksm_host, knob) in serial_outcomes, (order, delay, results)


@pytest.mark.parametrize('delay', DELAYS)
@pytest.mark.parametrize('order', ['sysfs first', 'ksm_unmerge first'])
def test_sysfs_with_unmerge_and_ksm_unmerge_end_in_a_serial_order(ksm_host, order, delay):
    """ksm_sysfs (unmerge_if_busy, puts back the run it read) beside ksm_unmerge ksmd=stopped: in either
    serial order ksmd ends stopped with everything unmerged (run 2) and the knob changed."""
    knob, knob_args, knob_value = busy_knob(ksm_host.state())
    merged_and_running(ksm_host, knob)
    sysfs = (SYSFS, dict(knob_args, unmerge_if_busy=True))
    unmerge = (UNMERGE, {'ksmd': 'stopped'})
    with MergeableWorkload(mib=WORKLOAD_MIB) as workload:
        workload.wait_for_sharing(MIN_SHARING, timeout=180)
        results = side_by_side(*((sysfs, unmerge) if order == 'sysfs first' else (unmerge, sysfs)), delay=delay)
        for result in results:
            assert result['failed'] is False, result.get('msg')
        state = ksm_host.state()
        assert (state['run'], state[knob]) == (2, knob_value), (order, delay, results)
        assert not _ksm.sharing_left(state)


def test_a_held_lock_makes_a_writer_wait_then_fail_naming_the_holder(ksm_host):
    before = writable_knobs(ksm_host.state())
    value = 1234 if before['pages_to_scan'] != 1234 else 1235
    with _ksm.host_lock(timeout=0, who='tests/system/test_concurrent_writers.py'):
        result = run_module(SYSFS, {'pages_to_scan': value, 'lock_timeout': 2})
        checked = run_module(SYSFS, {'pages_to_scan': value, 'lock_timeout': 2}, check=True)
        unmerged = run_module(UNMERGE, {'lock_timeout': 1})
    assert result['failed'] is True and result['changed'] is False
    assert 'holds the host lock %s' % _ksm.LOCK_PATH in result['msg']
    assert 'pid=%d program=tests/system/test_concurrent_writers.py' % os.getpid() in result['msg']
    assert 'within 2 s' in result['msg'] and result['holder'].startswith('pid=%d ' % os.getpid())
    assert unmerged['failed'] is True and 'program=tests/system/test_concurrent_writers.py' in unmerged['msg']
    assert writable_knobs(ksm_host.state()) == before
    assert checked['failed'] is False and checked['changed'] is True      # check mode reads only: no wait
    after = run_module(SYSFS, {'pages_to_scan': value, 'lock_timeout': 2})     # the lock is free again
    assert after['failed'] is False and ksm_host.state()['pages_to_scan'] == value
