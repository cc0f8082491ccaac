# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The sharing_audit filter behind the entry point verify of the ksm role: each finding named, with its remedy; a
check that cannot be made is a problem, never a silent pass. Inputs are ksm_info results as the module returns
them (tests/unit/plugins/modules/test_ksm_info.py proves the module side)."""

import copy

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.samepage.ksm.plugins.filter.sharing_audit import FilterModule, sharing_audit

QUIET = {
    'changed': False, 'failed': False, 'available': True,
    'settings': {'run': 0, 'pages_to_scan': 100},
    'counters': {'pages_shared': 0, 'pages_sharing': 0, 'full_scans': 12},
    'tuner': None,
    'boot': {'unit': '/etc/systemd/system/samepage-ksm-sysfs.service', 'installed': True, 'enabled': True,
             'knobs': {'run': 0}},
    'services': {'systemd': True, 'reason': None, 'units': [
        {'name': 'ksm', 'unit': 'ksm.service', 'installed': True, 'enabled': False, 'running': False, 'masked': False,
         'state': 'inactive (dead), disabled'},
        {'name': 'ksmtuned', 'unit': 'ksmtuned.service', 'installed': False, 'enabled': False, 'running': False,
         'masked': False, 'state': 'not installed'}]},
    'competing_writers': [],
    'process_scan': {'opted_in': [], 'skipped': [], 'complete': True},
    'libvirt': None,
}


def host(**changes):
    info = copy.deepcopy(QUIET)
    for key, value in changes.items():
        info[key] = value
    return info


def test_a_quiet_host_has_no_problem_and_no_note():
    assert sharing_audit(QUIET) == {'problems': [], 'notes': []}
    assert sharing_audit(host(settings={'run': 2})) == {'problems': [], 'notes': []}


def test_run_1_and_shared_pages_are_named():
    problems = sharing_audit(host(settings={'run': 1}, counters={'pages_shared': 10, 'pages_sharing': 300}))['problems']
    assert len(problems) == 2
    assert problems[0].startswith('run is 1: ksmd is merging pages. Set run=0 again with the role samepage.ksm.ksm')
    assert problems[1].startswith('10 pages are shared by 300 mappings (pages_shared, pages_sharing)')
    assert 'samepage.ksm.ksm_unmerge' in problems[1]


def test_services_running_or_enabled_are_named_with_the_remedy():
    units = copy.deepcopy(QUIET['services']['units'])
    units[0].update(enabled=True, running=True, state='active (exited), enabled')
    units[1].update(installed=True, enabled=True, state='inactive (dead), enabled')
    problems = sharing_audit(host(services={'systemd': True, 'reason': None, 'units': units}))['problems']
    assert problems == [
        'ksm.service is active (exited), enabled: it switches ksmd on. Stop and disable it with samepage.ksm.ksm_service '
        'name=ksm state=stopped enabled=false, or the role samepage.ksm.ksm with ksm_enabled: false (site.yml for this '
        'host).',
        'ksmtuned.service is inactive (dead), enabled: it switches ksmd on. Stop and disable it with '
        'samepage.ksm.ksm_service name=ksmtuned state=stopped enabled=false, or the role samepage.ksm.ksm with '
        'ksm_enabled: false (site.yml for this host).']


def test_without_systemd_the_service_check_fails_unless_left_out():
    reason = 'systemd is not running on this host (PID 1 is not systemd: /run/systemd/system does not exist), so ...'
    info = host(services={'systemd': False, 'reason': reason, 'units': []})
    audit = sharing_audit(info)
    assert audit['problems'] == [
        'whether the ksm and ksmtuned services are stopped and disabled cannot be checked: %s. On a host without '
        'systemd set ksm_verify_services: false to leave this check out knowingly.' % reason]
    left_out = sharing_audit(info, services=False)
    assert left_out == {'problems': [], 'notes': [
        'the ksm and ksmtuned services were not checked (ksm_verify_services is false)']}
    # asked to check, but ksm_info did not report them
    assert sharing_audit(host(services=None))['problems'] == [
        'the ksm and ksmtuned services were not reported (ksm_info was run without services=true).']


def test_the_samepage_tuner_is_named():
    problems = sharing_audit(host(tuner={'installed': True, 'running': True, 'phase': 'idle'}))['problems']
    assert problems == ['the samepage tuner is running, phase idle: it sets run=1 whenever merging pays. Remove it '
                        'with samepage.ksm.ksm_tuner state=absent, or the role samepage.ksm.ksm with ksm_enabled: '
                        'false (site.yml for this host).']


@pytest.mark.parametrize('boot, bad', [
    ({'installed': True, 'enabled': True, 'knobs': {'run': 1}}, True),
    ({'installed': True, 'enabled': False, 'knobs': {'run': 1}}, False),     # not enabled: it does not run at boot
    ({'installed': True, 'enabled': True, 'knobs': {'pages_to_scan': 5}}, False),
    ({'installed': False, 'enabled': False, 'knobs': {}}, False),             # the kernel boots with run=0
])
def test_a_boot_configuration_that_writes_run_1(boot, bad):
    boot = dict(boot, unit='/etc/systemd/system/samepage-ksm-sysfs.service')
    problems = sharing_audit(host(boot=boot))['problems']
    if bad:
        assert problems == ['the boot configuration /etc/systemd/system/samepage-ksm-sysfs.service writes run=1 at '
                            'every boot. Persist run=0 with samepage.ksm.ksm_sysfs run=false persist=true, or the role '
                            'samepage.ksm.ksm with ksm_enabled: false (site.yml for this host).']
    else:
        assert problems == []


def test_only_writers_that_switch_ksmd_on_are_problems():
    writers = [
        {'name': 'qemu-kvm.service', 'knobs': ['run', 'sleep_millisecs'], 'when': 'at boot', 'ours': False,
         'turns_on': True, 'evidence': ['qemu-kvm.service enabled (/etc/systemd/system/multi-user.target.wants/x)',
                                        '/etc/default/qemu-kvm: KSM_ENABLED=AUTO'],
         'remedy': 'set KSM_ENABLED (1, 0) and SLEEP_MILLISECS in /etc/default/qemu-kvm to the values you want'},
        {'name': 'tuned', 'knobs': ['run'], 'when': 'at boot and at every TuneD profile switch', 'ours': False,
         'turns_on': False, 'evidence': ['TuneD profile cpu-partitioning switches KSM off'], 'remedy': 'x'},
        {'name': 'samepage-ksm-tuner', 'knobs': ['run'], 'when': 'every interval', 'ours': True, 'turns_on': True,
         'evidence': ['y'], 'remedy': 'z'},
    ]
    assert sharing_audit(host(competing_writers=writers))['problems'] == [
        'qemu-kvm.service switches ksmd on at boot (qemu-kvm.service enabled (/etc/systemd/system/multi-user.target.'
        'wants/x); /etc/default/qemu-kvm: KSM_ENABLED=AUTO). Set KSM_ENABLED (1, 0) and SLEEP_MILLISECS in '
        '/etc/default/qemu-kvm to the values you want.']


def test_processes_that_opted_in_are_named_and_what_the_scan_could_not_tell_is_noted():
    scan = {'opted_in': [{'pid': 977, 'command': 'java'}, {'pid': 1200, 'command': 'python3'}],
            'skipped': ['this kernel does not say ...'], 'complete': False}
    audit = sharing_audit(host(process_scan=scan))
    assert audit['problems'] == [
        'pid 977 (java), pid 1200 (python3) opted in to merging as a whole (prctl PR_SET_MEMORY_MERGE, or systemd '
        'MemoryKSM=yes in their unit): their memory merges as soon as ksmd runs. Remove MemoryKSM= from their units '
        '(ksm_info competing_writers names them) and restart them.']
    assert audit['notes'] == ['process scan: this kernel does not say ...']
    info = host()
    del info['process_scan']
    assert sharing_audit(info)['notes'] == ['no process scan (ksm_info ran with max_processes=0): processes that '
                                            'opted in were not looked for']


def test_domains_without_nosharepages_only_when_asked():
    libvirt = {'uri': 'qemu:///system', 'available': True, 'msg': None, 'domains': [
        {'name': 'tenant-a', 'persistent': True, 'active': True, 'nosharepages': True, 'running_nosharepages': False},
        {'name': 'tenant-b', 'persistent': True, 'active': False, 'nosharepages': True, 'running_nosharepages': None},
        {'name': 'web01', 'persistent': True, 'active': True, 'nosharepages': False, 'running_nosharepages': False},
        {'name': 'scratch', 'persistent': False, 'active': True, 'nosharepages': None, 'running_nosharepages': True}]}
    info = host(libvirt=libvirt)
    assert sharing_audit(info)['problems'] == []
    assert sharing_audit(info, nosharepages=True)['problems'] == [
        'the definitions of web01 lack nosharepages: their QEMU would merge as soon as KSM runs. Opt them out with '
        'ksm_nosharepages_domains (samepage.ksm.libvirt_nosharepages).',
        'tenant-a, web01 run a QEMU started without nosharepages (mem-merge=on): restart them (virsh shutdown, then '
        'start; or ksm_nosharepages_restart: true).']


def test_libvirt_that_does_not_answer_fails_the_nosharepages_check():
    libvirt = {'uri': 'qemu:///system', 'available': False, 'domains': [],
               'msg': 'virsh was not found: this module manages libvirt domains through virsh'}
    assert sharing_audit(host(libvirt=libvirt), nosharepages=True)['problems'] == [
        'whether every libvirt domain carries nosharepages cannot be checked (ksm_verify_nosharepages is true): virsh '
        'was not found: this module manages libvirt domains through virsh']
    assert sharing_audit(host(), nosharepages=True)['problems'] == [
        'the libvirt domains were not reported (ksm_info was run without libvirt=true).']
    empty = {'uri': 'qemu:///system', 'available': True, 'msg': None, 'domains': []}
    assert sharing_audit(host(libvirt=empty), nosharepages=True) == {
        'problems': [], 'notes': ['libvirt at qemu:///system has no domains']}


def test_a_kernel_without_ksm_shares_nothing():
    info = {'available': False, 'msg': '/sys/kernel/mm/ksm does not exist: this kernel has no KSM', 'tuner': None,
            'settings': {}, 'counters': {}, 'services': None, 'libvirt': None}
    assert sharing_audit(info, nosharepages=True) == {'problems': [], 'notes': [
        'this kernel has no KSM (/sys/kernel/mm/ksm does not exist: this kernel has no KSM): nothing can be merged']}


def test_a_failed_ksm_info_and_a_wrong_input():
    assert sharing_audit({'failed': True, 'msg': 'Cannot read the KSM state: boom'})['problems'] == [
        'ksm_info failed: Cannot read the KSM state: boom']
    with pytest.raises(AnsibleFilterError, match='expects the registered result of samepage.ksm.ksm_info'):
        sharing_audit('run=0')


def test_every_finding_at_once_in_a_stable_order():
    units = copy.deepcopy(QUIET['services']['units'])
    units[0].update(enabled=True, state='inactive (dead), enabled')
    info = host(settings={'run': 1}, counters={'pages_shared': 1, 'pages_sharing': 2},
                services={'systemd': True, 'reason': None, 'units': units},
                tuner={'installed': True, 'running': False},
                boot={'unit': 'u', 'installed': True, 'enabled': True, 'knobs': {'run': 1}},
                process_scan={'opted_in': [{'pid': 5, 'command': 'x'}], 'skipped': []})
    problems = sharing_audit(info)['problems']
    assert [problem.split(' ')[0] for problem in problems] == ['run', '1', 'ksm.service', 'the', 'the', 'pid']
    assert 'the samepage tuner is installed:' in problems[3]


def test_the_filter_is_registered():
    assert FilterModule().filters() == {'sharing_audit': sharing_audit}
