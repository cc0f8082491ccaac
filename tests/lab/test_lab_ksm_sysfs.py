# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""samepage.ksm.ksm_sysfs over SSH on real guests: the four-step idiom on both kernel generations,
skip_missing on the older one, and merge_across_nodes=auto on one- and two-node guests."""

import time

import pytest

from ansible_collections.samepage.ksm.tests.lab.labtools import four_steps, module, read_ksm, reset_ksm

SYSFS = 'samepage.ksm.ksm_sysfs'


@pytest.fixture
def clean(lab, used_guests):
    """The test's guests at kernel defaults with ksmtuned stopped, before and after the test."""
    for guest in used_guests:
        reset_ksm(guest)
    yield
    for guest in used_guests:
        reset_ksm(guest)


def test_four_steps_on_each_generation(lab, lab_guest, clean):
    guest = lab_guest
    results = four_steps(lab, guest, SYSFS, {'run': True, 'pages_to_scan': 1234, 'sleep_millisecs': 37})
    assert [w['knob'] for w in results[1]['writes']] == ['pages_to_scan', 'sleep_millisecs', 'run']
    assert results[0]['diff'][0]['after']['pages_to_scan'] == 1234
    live = read_ksm(guest)
    assert (live['run'], live['pages_to_scan'], live['sleep_millisecs']) == ('1', '1234', '37')


def test_missing_knobs_fail_on_debian12_without_skip_missing(lab, debian12, clean):
    result = module(lab, debian12, SYSFS, {'advisor_max_cpu': 50, 'pages_to_scan': 500})
    assert result['failed']
    assert 'advisor_max_cpu' in result['msg']
    assert read_ksm(debian12)['pages_to_scan'] == '100', 'nothing may be written when a knob is refused'


def test_skip_missing_on_debian12(lab, debian12, clean):
    args = {'advisor_max_cpu': 50, 'smart_scan': False, 'pages_to_scan': 500, 'skip_missing': True}
    results = four_steps(lab, debian12, SYSFS, args)
    assert sorted(results[1]['skipped_knobs']) == ['advisor_max_cpu', 'smart_scan']
    assert 'Skipped advisor_max_cpu, smart_scan' in results[1].output
    assert read_ksm(debian12)['pages_to_scan'] == '500'


def test_same_task_sets_everything_on_debian13(lab, debian13, clean):
    args = {'advisor_max_cpu': 50, 'smart_scan': False, 'pages_to_scan': 500, 'skip_missing': True}
    results = four_steps(lab, debian13, SYSFS, args)
    assert results[1]['skipped_knobs'] == []
    live = read_ksm(debian13)
    assert (live['advisor_max_cpu'], live['smart_scan'], live['pages_to_scan']) == ('50', '0', '500')


def test_merge_across_nodes_auto_on_two_nodes(lab, numa_guest, clean):
    # Two nodes with memory: auto keeps one tree per node (0).
    four_steps(lab, numa_guest, SYSFS, {'merge_across_nodes': 'auto'})
    assert read_ksm(numa_guest)['merge_across_nodes'] == '0'


def test_merge_across_nodes_auto_on_one_node(lab, debian13, clean):
    # One node: auto is the kernel's 1, already in place.
    result = module(lab, debian13, SYSFS, {'merge_across_nodes': 'auto'})
    assert not result['failed'] and result['changed'] is False
    assert read_ksm(debian13)['merge_across_nodes'] == '1'


def test_merge_across_nodes_while_pages_are_shared(lab, numa_guest, clean):
    """EBUSY for real: refused while pages are shared, done with unmerge_if_busy=true."""
    numa_guest.ssh('systemd-run --unit=lab-test-workload /usr/bin/python3 -c "%s"' % (
        "import mmap,time; m=mmap.mmap(-1,32<<20,flags=mmap.MAP_PRIVATE|mmap.MAP_ANONYMOUS); "
        "m.madvise(mmap.MADV_MERGEABLE); m.write(b'k'*(32<<20)); time.sleep(3600)"))
    try:
        numa_guest.ssh('echo 5000 > /sys/kernel/mm/ksm/pages_to_scan && echo 1 > /sys/kernel/mm/ksm/run')
        deadline = time.time() + 180
        while int(read_ksm(numa_guest)['pages_sharing']) == 0:
            assert time.time() < deadline, 'the workload was not merged within 180 s'
            time.sleep(3)
        refused = module(lab, numa_guest, SYSFS, {'merge_across_nodes': 'never'})
        assert refused['failed']
        assert 'merge_across_nodes' in refused['msg'] and 'unmerge_if_busy' in refused['msg']
        assert read_ksm(numa_guest)['merge_across_nodes'] == '1'
        done = module(lab, numa_guest, SYSFS, {'merge_across_nodes': 'never', 'unmerge_if_busy': True})
        assert not done['failed'] and done['changed'], done.get('msg')
        assert done['unmerged']['pages'] > 0
        live = read_ksm(numa_guest)
        assert live['merge_across_nodes'] == '0'
        assert live['run'] == '1', 'run is put back after the unmerge'
    finally:
        numa_guest.ssh('systemctl stop lab-test-workload', check=False)
