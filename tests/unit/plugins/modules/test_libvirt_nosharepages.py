# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""libvirt_nosharepages against the fake virsh (tests/unit/fakes/virsh.py): the four steps, restarts, diffs, and
every refusal with nothing changed."""

import pytest

from ansible.module_utils import basic

from ansible_collections.samepage.ksm.plugins.module_utils import _libvirt
from ansible_collections.samepage.ksm.plugins.modules import libvirt_nosharepages
from ansible_collections.samepage.ksm.tests.support.four_steps import four_steps
from ansible_collections.samepage.ksm.tests.unit.fakes.virsh import FakeVirsh, definition
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.module_runner import run_main


@pytest.fixture
def virsh(monkeypatch, tmp_path):
    fake = FakeVirsh()
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', lambda module, args, **kwargs: fake.run_command(args, **kwargs))
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path',
                        lambda module, name, *args, **kwargs: '/usr/bin/virsh' if name == 'virsh' else None)
    monkeypatch.setattr(basic.AnsibleModule, 'tmpdir', str(tmp_path))
    monkeypatch.setattr(_libvirt, 'SHUTDOWN_POLL', 0.01)
    return fake


def run(args, check_mode=False, diff=False):
    return run_main(libvirt_nosharepages.main, args, check_mode=check_mode, diff=diff)


def configured(fake, name):
    return _libvirt.has_nosharepages(fake.domains[name].config)


def running_with(fake, name):
    return _libvirt.has_nosharepages(fake.domains[name].live)


def test_four_steps_opt_out_a_pattern_running_domains_pending(virsh):
    virsh.add('tenant-a', active=True)
    virsh.add('tenant-b')
    virsh.add('tenant-c', nosharepages=True)
    virsh.add('web01', active=True)
    results = four_steps(lambda check: run({'domains': ['tenant-*']}, check_mode=check), observe=virsh.mutations)
    checked, applied, again, checked_again = results
    for result in (checked, applied):
        assert result['changed_domains'] == ['tenant-a', 'tenant-b']
        assert result['pending_restart'] == ['tenant-a'] and result['restarted'] == []
    assert [(d['name'], d['active'], d['nosharepages_before'], d['nosharepages'], d['running_nosharepages'],
             d['changed'], d['pending_restart']) for d in applied['domains']] == [
        ('tenant-a', True, False, True, False, True, True),
        ('tenant-b', False, False, True, None, True, False),
        ('tenant-c', False, True, True, None, False, False)]
    assert applied['msg'] == ('tenant-a: nosharepages added, still running without it until restarted '
                              '(pending_restart); tenant-b: nosharepages added; tenant-c: unchanged')
    assert checked['msg'].startswith('tenant-a: nosharepages would be added')
    # the running domain keeps its setting; the next runs report it, unchanged
    for result in (again, checked_again):
        assert result['changed_domains'] == [] and result['pending_restart'] == ['tenant-a']
    assert configured(virsh, 'tenant-a') and configured(virsh, 'tenant-b') and not configured(virsh, 'web01')
    assert not running_with(virsh, 'tenant-a')
    assert [call[0] for call in virsh.mutations()] == ['define', 'define']
    assert applied['uri'] == 'qemu:///system'


def test_four_steps_with_restart_destroy(virsh):
    virsh.add('tenant-a', active=True, acpi=False)
    virsh.add('tenant-b')
    args = {'domains': ['tenant-a', 'tenant-b'], 'restart': True, 'restart_mode': 'destroy'}
    checked, applied, again, checked_again = four_steps(lambda check: run(args, check_mode=check),
                                                        observe=virsh.mutations)
    assert checked['restarted'] == ['tenant-a'] and checked['pending_restart'] == []
    assert virsh.mutations() == [['define', virsh.mutations()[0][1]], ['define', virsh.mutations()[1][1]],
                                 ['destroy', 'tenant-a'], ['start', 'tenant-a']]
    assert applied['restarted'] == ['tenant-a'] and applied['pending_restart'] == []
    assert applied['domains'][0]['running_nosharepages'] is True and applied['domains'][0]['restarted'] is True
    assert running_with(virsh, 'tenant-a')
    assert again['restarted'] == [] and again['pending_restart'] == []
    assert 'tenant-a: nosharepages added, restarted' in applied['msg']


def test_restart_of_a_domain_defined_earlier_is_a_change_of_its_own(virsh):
    virsh.add('tenant-a', active=True)
    assert run({'domains': ['tenant-a']})['pending_restart'] == ['tenant-a']
    result = run({'domains': ['tenant-a'], 'restart': True})    # shutdown: the guest reacts
    assert result['changed'] is True and result['changed_domains'] == [] and result['restarted'] == ['tenant-a']
    assert [call[0] for call in virsh.mutations()] == ['define', 'shutdown', 'start']
    assert running_with(virsh, 'tenant-a')
    assert run({'domains': ['tenant-a'], 'restart': True})['changed'] is False


def test_a_guest_that_ignores_the_shutdown_fails_the_task_truthfully(virsh):
    virsh.add('tenant-a', active=True, acpi=False)
    result = run({'domains': ['tenant-a'], 'restart': True, 'shutdown_timeout': 1})
    assert result['failed'] is True
    assert "Domain 'tenant-a' did not shut down within 1 s" in result['msg'] and result['option'] == 'shutdown_timeout'
    # what did happen: the definition changed, the domain still runs with the old setting
    assert result['changed'] is True and result['changed_domains'] == ['tenant-a']
    assert result['pending_restart'] == ['tenant-a'] and result['restarted'] == []
    assert configured(virsh, 'tenant-a') and virsh.domains['tenant-a'].active and not running_with(virsh, 'tenant-a')


def test_absent_removes_it_and_keeps_other_memory_backing(virsh):
    virsh.add('trusted', nosharepages=True)
    virsh.domains['hp'] = type(virsh.domains['trusted'])('hp', definition('hp', extra=(
        '  <memoryBacking>\n    <hugepages/>\n    <nosharepages/>\n  </memoryBacking>\n')))
    virsh.add('never', active=True)
    results = four_steps(lambda check: run({'domains': ['trusted', 'hp', 'never'], 'state': 'absent'},
                                           check_mode=check, diff=True), observe=virsh.mutations)
    applied = results[1]
    assert applied['changed_domains'] == ['hp', 'trusted'] and applied['pending_restart'] == []
    assert not configured(virsh, 'trusted') and 'memoryBacking' not in virsh.domains['trusted'].config
    assert '<hugepages />' in virsh.domains['hp'].config and not configured(virsh, 'hp')
    assert applied['diff'] == [
        {'before_header': 'hp: <memoryBacking> of the persistent definition',
         'after_header': 'hp: <memoryBacking> of the persistent definition',
         'before': '<memoryBacking>\n  <hugepages />\n  <nosharepages />\n</memoryBacking>\n',
         'after': '<memoryBacking>\n  <hugepages />\n</memoryBacking>\n'},
        {'before_header': 'trusted: <memoryBacking> of the persistent definition',
         'after_header': 'trusted: <memoryBacking> of the persistent definition',
         'before': '<memoryBacking>\n  <nosharepages />\n</memoryBacking>\n', 'after': ''}]
    assert results[2]['diff'] == [] and results[3]['diff'] == []


def test_diff_in_check_mode_and_none_without_diff_mode(virsh):
    virsh.add('tenant-a')
    checked = run({'domains': ['tenant-a']}, check_mode=True, diff=True)
    assert checked['diff'] == [{'before_header': 'tenant-a: <memoryBacking> of the persistent definition',
                                'after_header': 'tenant-a: <memoryBacking> of the persistent definition',
                                'before': '', 'after': '<memoryBacking>\n  <nosharepages />\n</memoryBacking>\n'}]
    assert 'diff' not in run({'domains': ['tenant-a']}, check_mode=True)
    assert virsh.mutations() == []


@pytest.mark.parametrize('args, words', [
    ({'domains': ['nosuch']}, ["no domain named 'nosuch'", 'domains known to libvirt: scratch, tenant-a']),
    ({'domains': ['prod-*', 'tenant-a']}, ["no domain matches 'prod-*'"]),
    ({'domains': ['tenant-a', 'scratch']}, ["'scratch' transient", 'define it persistently first']),
    ({'domains': ['*']}, ["'scratch' transient"]),
    ({'domains': ['tenant-a;reboot']}, ["'tenant-a;reboot' contains ';'", 'Shell metacharacters']),
    ({'domains': ['$(halt)']}, ["contains '$', '(', ')'"]),
    ({'domains': ['tenant-a'], 'uri': 'qemu:///system\nx'}, ['Invalid value', 'for uri']),
    ({'domains': ['tenant-a'], 'shutdown_timeout': 0}, ['Invalid value 0 for shutdown_timeout']),
    ({'domains': ['tenant-a'], 'uri': 'qemu+ssh://nowhere/system'}, ['Cannot connect to libvirt at '
                                                                     'qemu+ssh://nowhere/system']),
])
def test_bad_input_fails_naming_it_and_changes_nothing(virsh, args, words):
    virsh.add('tenant-a', active=True)
    virsh.add('scratch', persistent=False, active=True)
    for check_mode in (True, False):
        result = run(args, check_mode=check_mode)
        assert result['failed'] is True and result['changed'] is False
        for word in words:
            assert word in result['msg'], result['msg']
        assert result['changed_domains'] == [] and result['restarted'] == []
    assert virsh.mutations() == []
    assert not configured(virsh, 'tenant-a')


def test_libvirt_down_and_virsh_missing(virsh, monkeypatch):
    virsh.add('tenant-a')
    virsh.up = False
    result = run({'domains': ['tenant-a']})
    assert result['failed'] is True and result['changed'] is False
    assert result['msg'].startswith('Cannot connect to libvirt at qemu:///system (is libvirtd or virtqemud running?): '
                                    'error: failed to connect to the hypervisor error: Failed to connect socket')
    assert result['msg'].endswith('Nothing was changed.')
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path', lambda module, name, *args, **kwargs: None)
    result = run({'domains': ['tenant-a']})
    assert result['failed'] is True and 'virsh was not found' in result['msg']
    assert result['package'] == 'libvirt-clients'
    assert virsh.mutations() == []


def test_a_refused_definition_stops_the_task_saying_what_was_done(virsh):
    virsh.add('a')
    virsh.add('b')
    virsh.add('c')
    virsh.refuse_define['b'] = 'XML error: unsupported configuration'
    result = run({'domains': ['a', 'b', 'c']})
    assert result['failed'] is True
    assert result['msg'] == ('virsh define of the new definition of b failed (exit status 1): error: Failed to define '
                             'domain from %s '
                             'error: XML error: unsupported configuration' % virsh.mutations()[1][1])
    assert result['changed'] is True and result['changed_domains'] == ['a']
    assert configured(virsh, 'a') and not configured(virsh, 'b') and not configured(virsh, 'c')


def test_the_definition_is_handed_over_through_a_private_file_that_is_removed(virsh, tmp_path):
    virsh.add('tenant-a')
    run({'domains': ['tenant-a']})
    (command, path), = virsh.mutations()
    assert command == 'define' and path.startswith(str(tmp_path)) and path.endswith('.xml')
    assert list(tmp_path.iterdir()) == []
    assert all(environment['LC_ALL'] == 'C' for environment in virsh.environments)
