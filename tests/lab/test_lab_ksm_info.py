# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""samepage.ksm.ksm_info over SSH on both kernel generations and on the two-node guest."""

from ansible_collections.samepage.ksm.tests.lab.labtools import module, read_ksm

ADVISOR_GENERATION = ('advisor_max_cpu', 'advisor_max_pages_to_scan', 'advisor_min_pages_to_scan',
                      'advisor_mode', 'advisor_target_scan_time', 'general_profit', 'ksm_zero_pages',
                      'pages_scanned', 'pages_skipped', 'smart_scan')


def test_capabilities_match_the_guest_kernel(lab, lab_guest):
    guest = lab_guest
    result = module(lab, guest, 'samepage.ksm.ksm_info', {'max_processes': 0}, check=True)
    assert not result['failed'], result.get('msg')
    assert result['changed'] is False
    assert result['available'] is True
    caps = result['capabilities']
    files = sorted(read_ksm(guest))
    assert caps['knobs'] == files
    assert caps['kernel_release'] == guest.ssh('uname -r').stdout.strip()
    assert caps['numa_nodes_with_memory'] == [0]     # both have one node (the NUMA guest: test below)
    if guest.debian == 12:
        assert len(files) == 14
        assert caps['advisor'] is False
        assert not set(ADVISOR_GENERATION) & set(files)
        assert 'advisor_mode' not in result['settings'] and 'smart_scan' not in result['settings']
    else:
        assert len(files) == 24
        assert caps['advisor'] is True
        assert set(ADVISOR_GENERATION) <= set(files)
        assert result['settings']['advisor_mode'] in ('none', 'scan-time')
        assert 'general_profit' in result['counters']


def test_numa_nodes_reported(lab, numa_guest):
    two = module(lab, numa_guest, 'samepage.ksm.ksm_info', {'max_processes': 0})
    assert two['capabilities']['numa_nodes_with_memory'] == [0, 1]


def test_settings_are_the_kernels(lab, debian13):
    live = read_ksm(debian13)
    result = module(lab, debian13, 'samepage.ksm.ksm_info', {'max_processes': 0})
    settings = result['settings']
    for name in ('pages_to_scan', 'sleep_millisecs', 'max_page_sharing', 'merge_across_nodes'):
        assert settings[name] == int(live[name]), name
