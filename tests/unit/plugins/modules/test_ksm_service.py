# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ksm_service against a fake systemctl that follows systemd's rules (tests/unit/fakes/systemd.py) and
os-release files of each distribution. Real systemd: tests/lab/test_ksm_service.py."""

import pytest

from ansible.module_utils import basic

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_units, _systemd
from ansible_collections.samepage.ksm.plugins.modules import ksm_service
from ansible_collections.samepage.ksm.tests.support.four_steps import four_steps
from ansible_collections.samepage.ksm.tests.unit.fakes import systemd as fakes
from ansible_collections.samepage.ksm.tests.unit.fakes.os_release import OS_RELEASES
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.module_runner import run_main

KSM = 'ksm.service'
TUNED = 'ksmtuned.service'


class Host:
    """A fake host: the fake systemd wired into AnsibleModule, an os-release file, and the paths the
    module looks at (/run/systemd/system, Proxmox markers, TuneD's ksm-masked) under tmp_path."""

    def __init__(self, tmp_path, monkeypatch, systemd, distro='debian12', booted=True, proxmox=False,
                 tuned_masked=False):
        self.systemd = systemd
        self.tmp_path = tmp_path
        runtime = tmp_path / 'run-systemd-system'
        if booted:
            runtime.mkdir()
        os_release = tmp_path / 'os-release'
        os_release.write_text(OS_RELEASES[distro])
        marker = tmp_path / 'pveversion'
        if proxmox:
            marker.write_text('#!/bin/sh\n')
        tuned = tmp_path / 'ksm-masked'
        if tuned_masked:
            tuned.write_text('1\n')
        monkeypatch.setattr(_systemd, 'RUNTIME_DIR', str(runtime))
        monkeypatch.setattr(_ksm_units, 'OS_RELEASE_PATHS', (str(os_release),))
        monkeypatch.setattr(_ksm_units, 'PROXMOX_MARKERS', (str(marker),))
        monkeypatch.setattr(_ksm_units, 'TUNED_KSM_MASKED', str(tuned))
        monkeypatch.setattr(basic.AnsibleModule, 'run_command',
                            lambda module, args, **kwargs: systemd.run_command(args, **kwargs))
        monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path',
                            lambda module, name, required=False, opt_dirs=None: '/usr/bin/' + name)

    def run(self, check_mode=False, diff=False, **args):
        return run_main(ksm_service.main, args, check_mode=check_mode, diff=diff)

    def four_steps(self, **args):
        """The change in check mode, for real, again, again in check mode -> the four results."""
        calls = len(self.systemd.calls)

        def run(check):
            nonlocal calls
            calls = len(self.systemd.calls)
            return self.run(check_mode=check, **args)

        first, second, third, fourth = four_steps(run, observe=self.systemd.mutating_calls,
                                                  describe=lambda result: result['msg'])
        assert third['actions'] == []
        assert self.systemd.calls[calls:] and all(c[1] in fakes.QUERIES for c in self.systemd.calls[calls:])
        # check mode predicted what the real run did (the states; an unmasked unit's enablement is
        # the one thing check mode cannot know)
        predicted, done = _after_states(first), _after_states(second)
        for name in done:
            if predicted[name][1] == 'unknown':
                predicted[name] = (predicted[name][0], done[name][1])
        assert predicted == done
        assert first['actions'] == second['actions']
        return first, second, third, fourth

    def active(self, unit):
        return self.systemd.unit(unit).active

    def enablement(self, unit):
        return self.systemd.unit(unit).enablement


def _after_states(result):
    return {name: (entry['after']['active_state'], entry['after']['unit_file_state'])
            for name, entry in result['units'].items()}


@pytest.fixture
def make_host(tmp_path, monkeypatch):
    def make(systemd, **kwargs):
        return Host(tmp_path, monkeypatch, systemd, **kwargs)
    return make


# ---------------------------------------------------------------------------------------------------
# No systemd, bad arguments

def test_no_systemd_as_pid1_is_a_clear_error(make_host):
    host = make_host(fakes.debian(booted=False), booted=False)
    result = host.run(name='ksm', state='started')
    assert result['failed'] is True
    assert 'systemd is not running as PID 1' in result['msg']
    assert 'run-systemd-system does not exist' in result['msg']
    assert 'samepage.ksm.ksm_sysfs' in result['msg']
    assert host.systemd.calls == []


def test_systemctl_failure_is_reported_not_raised(make_host):
    # /run/systemd/system exists but the bus does not answer (systemctl's real message)
    host = make_host(fakes.debian(booted=False))
    result = host.run(name='ksm', state='started')
    assert result['failed'] is True
    assert 'systemctl show' in result['msg'] and "Can't operate" in result['msg']


def test_state_or_enabled_is_required(make_host):
    host = make_host(fakes.debian())
    result = host.run(name='ksm')
    assert result['failed'] is True
    assert 'state' in result['msg'] and 'enabled' in result['msg']


@pytest.mark.parametrize('name', ['ksmd', 'ksm.service'])
def test_unknown_logical_name_is_refused(make_host, name):
    host = make_host(fakes.debian())
    result = host.run(name=name, state='started')
    assert result['failed'] is True and 'name' in result['msg']
    assert host.systemd.calls == []


# ---------------------------------------------------------------------------------------------------
# started / stopped on Debian (two units, ksmtuned Requires=ksm)

def test_start_ksmtuned_pulls_in_ksm_and_reports_both(make_host):
    host = make_host(fakes.debian(active=False))
    first, second, third, fourth = host.four_steps(name='ksmtuned', state='started')
    assert second['unit'] == TUNED and second['package'] == 'ksmtuned'
    assert second['actions'] == ['start ksmtuned.service']
    assert host.systemd.events == [('start', KSM), ('start', TUNED)]
    units = second['units']
    assert units['ksm']['before']['active_state'] == 'inactive'
    assert units['ksm']['after']['active_state'] == 'active'
    assert units['ksm']['after']['sub_state'] == 'exited'
    assert units['ksmtuned']['before']['active_state'] == 'inactive'
    assert units['ksmtuned']['after']['sub_state'] == 'running'
    assert units['ksmtuned']['after']['main_pid'] > 0
    # check mode predicted both
    assert first['units']['ksm']['after']['active_state'] == 'active'
    assert first['units']['ksmtuned']['after']['active_state'] == 'active'
    assert host.active(KSM) and host.active(TUNED) and host.systemd.ksm_run == 1


def test_start_ksm_alone_leaves_ksmtuned_alone(make_host):
    host = make_host(fakes.debian(active=False))
    host.four_steps(name='ksm', state='started')
    assert host.active(KSM) and not host.active(TUNED)


def test_stop_ksm_stops_ksmtuned_first_explicitly(make_host):
    host = make_host(fakes.debian(active=True))
    first, second, third, fourth = host.four_steps(name='ksm', state='stopped')
    assert second['actions'] == ['stop ksmtuned.service', 'stop ksm.service']
    assert first['actions'] == second['actions']
    assert host.systemd.events == [('stop', TUNED), ('stop', KSM)]
    assert second['units']['ksmtuned']['after']['active_state'] == 'inactive'
    assert second['units']['ksm']['after']['active_state'] == 'inactive'
    assert first['units']['ksmtuned']['after']['active_state'] == 'inactive'
    assert not host.active(KSM) and not host.active(TUNED) and host.systemd.ksm_run == 0
    # stopping is not disabling
    assert host.enablement(KSM) == 'enabled' and host.enablement(TUNED) == 'enabled'


def test_stop_ksmtuned_leaves_ksm_running(make_host):
    host = make_host(fakes.debian(active=True))
    first, second, third, fourth = host.four_steps(name='ksmtuned', state='stopped')
    assert second['actions'] == ['stop ksmtuned.service']
    assert host.active(KSM) and not host.active(TUNED)
    assert second['units']['ksm']['after']['active_state'] == 'active'


def test_started_is_idempotent_when_running(make_host):
    host = make_host(fakes.debian(active=True))
    result = host.run(name='ksmtuned', state='started')
    assert result['changed'] is False and result['actions'] == []
    assert host.systemd.mutating_calls() == []
    assert result['units']['ksmtuned']['before'] == result['units']['ksmtuned']['after']


def test_state_is_read_in_one_show_call(make_host):
    host = make_host(fakes.debian(active=True))
    host.run(name='ksm', state='started')
    shows = [call for call in host.systemd.calls if call[1] == 'show']
    assert len(shows) == 1
    call = shows[0]
    assert call[0] == '/usr/bin/systemctl'
    assert {KSM, TUNED, 'qemu-kvm.service'} <= set(call)
    props = call[call.index('-p') + 1].split(',')
    assert {'ActiveState', 'SubState', 'UnitFileState', 'LoadState', 'MainPID', 'ConditionResult'} <= set(props)


# ---------------------------------------------------------------------------------------------------
# enabled

@pytest.mark.parametrize('name', ['ksm', 'ksmtuned'])
def test_enable_each(make_host, name):
    host = make_host(fakes.debian(active=False, enabled='disabled'))
    unit = KSM if name == 'ksm' else TUNED
    first, second, third, fourth = host.four_steps(name=name, enabled=True)
    assert second['actions'] == ['enable %s' % unit]
    assert second['units'][name]['after']['unit_file_state'] == 'enabled'
    assert first['units'][name]['after']['unit_file_state'] == 'enabled'
    assert host.enablement(unit) == 'enabled'
    assert not host.active(unit), 'enabling must not start'


@pytest.mark.parametrize('name', ['ksm', 'ksmtuned'])
def test_disable_each(make_host, name):
    host = make_host(fakes.debian(active=True))
    unit = KSM if name == 'ksm' else TUNED
    first, second, third, fourth = host.four_steps(name=name, enabled=False)
    assert second['actions'] == ['disable %s' % unit]
    assert host.enablement(unit) == 'disabled'
    assert host.active(unit), 'disabling must not stop'


def test_disable_ksm_while_ksmtuned_enabled_warns(make_host):
    host = make_host(fakes.debian(active=True))
    result = host.run(name='ksm', enabled=False)
    assert result['changed'] is True
    assert any('ksmtuned.service is enabled and Requires=ksm.service' in w for w in result['warnings'])
    host.run(name='ksmtuned', enabled=False)
    result = host.run(name='ksm', enabled=False)
    assert result['changed'] is False and result['warnings'] == []


def test_enable_and_start_together(make_host):
    host = make_host(fakes.debian(active=False, enabled='disabled'))
    first, second, third, fourth = host.four_steps(name='ksmtuned', state='started', enabled=True)
    assert second['actions'] == ['enable ksmtuned.service', 'start ksmtuned.service']
    assert host.active(TUNED) and host.active(KSM) and host.enablement(TUNED) == 'enabled'
    assert host.enablement(KSM) == 'disabled'


def test_static_unit_counts_as_enabled_and_cannot_be_disabled(make_host):
    systemd = fakes.debian()
    systemd.unit(KSM).enablement = 'static'
    host = make_host(systemd)
    result = host.run(name='ksm', enabled=True)
    assert result['failed'] is False and result['changed'] is False
    result = host.run(name='ksm', enabled=False)
    assert result['failed'] is True
    assert 'ksm.service is static' in result['msg'] and 'enabled=false' in result['msg']
    assert host.systemd.mutating_calls() == []


# ---------------------------------------------------------------------------------------------------
# restarted / retuned

def test_restart_always_changes_but_not_in_check_mode(make_host):
    host = make_host(fakes.debian(active=True))
    pid = host.systemd.unit(TUNED).pid
    result = host.run(check_mode=True, name='ksmtuned', state='restarted')
    assert result['changed'] is True and result['actions'] == ['restart ksmtuned.service']
    assert host.systemd.mutating_calls() == [] and host.systemd.unit(TUNED).pid == pid
    for dummy in range(2):
        result = host.run(name='ksmtuned', state='restarted')
        assert result['failed'] is False and result['changed'] is True
        assert result['actions'] == ['restart ksmtuned.service']
        assert host.systemd.unit(TUNED).pid != pid
        pid = host.systemd.unit(TUNED).pid
        assert result['units']['ksmtuned']['after']['main_pid'] == pid


def test_restart_ksm_restarts_running_ksmtuned_and_reports_it(make_host):
    host = make_host(fakes.debian(active=True))
    pid = host.systemd.unit(TUNED).pid
    result = host.run(name='ksm', state='restarted')
    assert result['changed'] is True and result['actions'] == ['restart ksm.service']
    assert host.systemd.unit(TUNED).pid != pid
    assert result['units']['ksmtuned']['before']['main_pid'] == pid
    assert result['units']['ksmtuned']['after']['main_pid'] == host.systemd.unit(TUNED).pid


def test_restart_stopped_ksmtuned_starts_both(make_host):
    host = make_host(fakes.debian(active=False))
    result = host.run(name='ksmtuned', state='restarted')
    assert result['changed'] is True
    assert host.active(TUNED) and host.active(KSM)


def test_retune_sends_a_reload_every_time(make_host):
    host = make_host(fakes.debian(active=True))
    result = host.run(check_mode=True, name='ksmtuned', state='retuned')
    assert result['changed'] is True and result['actions'] == ['reload ksmtuned.service']
    assert host.systemd.unit(TUNED).reloads == 0 and host.systemd.mutating_calls() == []
    for count in (1, 2):
        result = host.run(name='ksmtuned', state='retuned')
        assert result['failed'] is False and result['changed'] is True
        assert host.systemd.unit(TUNED).reloads == count
    assert ['/usr/bin/systemctl', 'reload', '--', TUNED] in host.systemd.calls


def test_retune_ksm_is_an_error_that_explains(make_host):
    host = make_host(fakes.debian(active=True))
    result = host.run(name='ksm', state='retuned')
    assert result['failed'] is True
    assert 'ksmtuned only' in result['msg'] and 'SIGUSR1' in result['msg']
    assert 'ksm.service is a oneshot' in result['msg'] and 'state=restarted' in result['msg']
    assert host.systemd.mutating_calls() == []


def test_retune_stopped_ksmtuned_starts_it_with_a_warning(make_host):
    host = make_host(fakes.debian(active=False))
    result = host.run(name='ksmtuned', state='retuned')
    assert result['failed'] is False and result['changed'] is True
    assert result['actions'] == ['start ksmtuned.service']
    assert any('not running' in w for w in result['warnings'])
    assert host.active(TUNED) and host.active(KSM) and host.systemd.unit(TUNED).reloads == 0


def test_retune_without_exec_reload_fails_clearly(make_host):
    systemd = fakes.debian(active=True)
    systemd.unit(TUNED).can_reload = False
    host = make_host(systemd)
    result = host.run(name='ksmtuned', state='retuned')
    assert result['failed'] is True and 'no reload action' in result['msg']
    assert host.systemd.mutating_calls() == []


# ---------------------------------------------------------------------------------------------------
# Masked units

def masked_debian():
    systemd = fakes.debian(active=False)
    systemd.run_command(['systemctl', 'mask', KSM], environ_update={'LC_ALL': 'C'})
    systemd.run_command(['systemctl', 'mask', TUNED], environ_update={'LC_ALL': 'C'})
    systemd.calls = []
    systemd.events = []
    return systemd


def test_masked_unit_fails_clearly_without_unmask(make_host):
    host = make_host(masked_debian())
    result = host.run(name='ksm', state='started')
    assert result['failed'] is True
    assert result['msg'].startswith('ksm.service is masked')
    assert 'unmask=true' in result['msg'] and 'TuneD' in result['msg']
    assert '/var/lib/tuned/ksm-masked' not in result['msg']
    assert result['units']['ksm']['before']['unit_file_state'] == 'masked'
    assert host.systemd.mutating_calls() == []


def test_masked_by_tuned_names_its_marker(make_host):
    host = make_host(masked_debian(), tuned_masked=True)
    result = host.run(name='ksmtuned', enabled=True)
    assert result['failed'] is True
    assert 'ksmtuned.service is masked' in result['msg']
    assert str(host.tmp_path / 'ksm-masked') in result['msg']


def test_starting_ksmtuned_with_masked_ksm_names_the_dependency(make_host):
    systemd = fakes.debian(active=False)
    systemd.unit(KSM).masked = True
    host = make_host(systemd)
    result = host.run(name='ksmtuned', state='started')
    assert result['failed'] is True
    assert 'ksmtuned.service Requires=ksm.service' in result['msg']
    assert 'ksm.service is masked' in result['msg']
    # what systemd itself would have said:
    rc, out, err = fakes.debian(active=False).run_command(['systemctl', 'start', TUNED],
                                                          environ_update={'LC_ALL': 'C'})
    assert rc == 0
    systemd2 = fakes.debian(active=False)
    systemd2.unit(KSM).masked = True
    rc, out, err = systemd2.run_command(['systemctl', 'start', TUNED], environ_update={'LC_ALL': 'C'})
    assert rc == 1 and err == 'Failed to start ksmtuned.service: Unit ksm.service is masked.\n'


def test_unmask_then_start(make_host):
    host = make_host(masked_debian())
    first, second, third, fourth = host.four_steps(name='ksmtuned', state='started', unmask=True)
    assert second['actions'] == ['unmask ksmtuned.service', 'unmask ksm.service', 'start ksmtuned.service']
    assert host.active(TUNED) and host.active(KSM)
    assert not host.systemd.unit(KSM).masked and not host.systemd.unit(TUNED).masked
    assert second['units']['ksm']['before']['unit_file_state'] == 'masked'
    assert second['units']['ksm']['after']['unit_file_state'] == 'enabled'  # its enablement is back
    assert first['units']['ksm']['after']['unit_file_state'] == 'unknown'


def test_masked_ksmtuned_alone_is_unmasked_then_started(make_host):
    # TuneD-style mask of ksmtuned only; ksm.service is fine
    systemd = fakes.debian(active=False)
    systemd.unit(TUNED).masked = True
    host = make_host(systemd)
    result = host.run(name='ksmtuned', state='started')
    assert result['failed'] is True and result['msg'].startswith('ksmtuned.service is masked')
    first, second, third, fourth = host.four_steps(name='ksmtuned', state='started', unmask=True)
    assert second['actions'] == ['unmask ksmtuned.service', 'start ksmtuned.service']
    assert host.active(TUNED) and host.active(KSM)


def test_unmask_and_enable_in_check_mode_predicts_enable(make_host):
    systemd = masked_debian()
    systemd.unit(KSM).enablement = 'disabled'
    host = make_host(systemd)
    first, second, third, fourth = host.four_steps(name='ksm', enabled=True, unmask=True)
    assert first['actions'] == ['unmask ksm.service', 'enable ksm.service']
    assert host.enablement(KSM) == 'enabled' and not host.systemd.unit(KSM).masked


def test_masked_unit_can_be_stopped_and_counts_as_disabled(make_host):
    systemd = fakes.debian(active=True)
    systemd.unit(TUNED).masked = True     # masked while running: masking does not stop
    host = make_host(systemd)
    result = host.run(name='ksmtuned', enabled=False)
    assert result['failed'] is False and result['changed'] is False
    first, second, third, fourth = host.four_steps(name='ksmtuned', state='stopped')
    assert not host.active(TUNED) and host.systemd.unit(TUNED).masked


def test_unmask_true_unmasks_when_only_stopping_or_disabling(make_host):
    host = make_host(masked_debian())
    first, second, third, fourth = host.four_steps(name='ksm', state='stopped', enabled=False, unmask=True)
    assert second['actions'] == ['unmask ksm.service', 'disable ksm.service']
    assert not host.systemd.unit(KSM).masked and host.enablement(KSM) == 'disabled'
    assert host.systemd.unit(TUNED).masked, 'only the unit named is unmasked'


def test_restart_skipped_by_condition_fails_clearly(make_host):
    host = make_host(fakes.rhel_guest(), distro='alma9')
    result = host.run(name='ksm', state='restarted')
    assert result['failed'] is True and 'ksm.service did not start' in result['msg']


def test_mask_without_unit_file_is_reported_after_unmask(make_host):
    systemd = fakes.empty()
    systemd.run_command(['systemctl', 'mask', KSM], environ_update={'LC_ALL': 'C'})
    host = make_host(systemd)
    result = host.run(name='ksm', state='started', unmask=True)
    assert result['failed'] is True
    assert 'no unit file behind the mask' in result['msg'] and 'package ksmtuned' in result['msg']


# ---------------------------------------------------------------------------------------------------
# Distributions: missing units name the package

@pytest.mark.parametrize('distro, package, hint', [
    ('debian12', 'ksmtuned', 'apt-get install ksmtuned'),
    ('debian13', 'ksmtuned', 'apt-get install ksmtuned'),
    ('rhel7', 'qemu-kvm-common', 'yum install qemu-kvm-common'),
    ('rhel8', 'qemu-kvm-common', 'dnf install qemu-kvm-common'),
    ('rocky8', 'qemu-kvm-common', 'dnf install qemu-kvm-common'),
    ('rhel9', 'ksmtuned', 'dnf install ksmtuned'),
    ('alma9', 'ksmtuned', 'dnf install ksmtuned'),
    ('centos_stream9', 'ksmtuned', 'dnf install ksmtuned'),
    ('fedora28', 'ksm', 'dnf install ksm'),
    ('fedora40', 'ksmtuned', 'dnf install ksmtuned'),
    ('arch', 'ksmtuned-git', 'AUR'),
    ('manjaro', 'ksmtuned-git', 'AUR'),
])
def test_missing_units_name_the_package(make_host, distro, package, hint):
    host = make_host(fakes.empty(), distro=distro)
    for name, unit in (('ksm', KSM), ('ksmtuned', TUNED)):
        result = host.run(name=name, state='started')
        assert result['failed'] is True
        assert result['msg'].startswith('%s is not installed' % unit)
        assert 'package %s ' % package in result['msg'] and hint in result['msg']
        assert result['package'] == package
    assert host.systemd.mutating_calls() == []


@pytest.mark.parametrize('args', [
    {'state': 'stopped'}, {'enabled': False}, {'state': 'stopped', 'enabled': False},
])
def test_missing_unit_fails_to_stop_or_disable_by_default(make_host, args):
    host = make_host(fakes.empty(), distro='debian12')
    for check_mode in (True, False):
        result = host.run(check_mode=check_mode, name='ksmtuned', **args)
        assert result['failed'] is True and result['changed'] is False
        assert result['msg'].startswith('ksmtuned.service is not installed: on Debian GNU/Linux 12 (bookworm) it '
                                        'comes with the package ksmtuned (apt-get install ksmtuned).')
        assert result['package'] == 'ksmtuned' and result['unit'] is None
    assert host.systemd.mutating_calls() == []


@pytest.mark.parametrize('args', [
    {'state': 'stopped'}, {'enabled': False}, {'state': 'stopped', 'enabled': False},
])
def test_missing_unit_is_already_stopped_and_disabled_unless_it_must_exist(make_host, args):
    host = make_host(fakes.empty(), distro='debian12')
    for check_mode in (True, False):
        result = host.run(check_mode=check_mode, name='ksmtuned', must_exist=False, **args)
        assert result['failed'] is False and result['changed'] is False
        assert result['unit'] is None and result['package'] == 'ksmtuned'
        assert result['msg'].startswith('ksmtuned.service is not installed')
        assert result['msg'].endswith('Nothing to stop or disable.')
        assert result['units'] == {} and result['actions'] == []
    assert host.systemd.mutating_calls() == []


@pytest.mark.parametrize('args', [{'state': 'stopped', 'enabled': True}, {'state': 'restarted'},
                                  {'state': 'retuned'}, {'enabled': True}])
def test_missing_unit_fails_for_anything_but_off(make_host, args):
    host = make_host(fakes.empty(), distro='debian13')
    for must_exist in (True, False):
        result = host.run(name='ksmtuned', must_exist=must_exist, **args)
        assert result['failed'] is True and 'package ksmtuned' in result['msg']


def test_proxmox_ksm_stopped_is_fine_and_leaves_ksmtuned(make_host):
    host = make_host(fakes.proxmox(active=True), distro='proxmox8', proxmox=True)
    strict = host.run(name='ksm', state='stopped', enabled=False)
    assert strict['failed'] is True and 'has no ksm unit' in strict['msg']
    result = host.run(name='ksm', state='stopped', enabled=False, must_exist=False)
    assert result['failed'] is False and result['changed'] is False
    assert 'has no ksm unit' in result['msg']
    assert host.active(TUNED) and list(result['units']) == ['ksmtuned']


def test_missing_on_unknown_distribution(make_host):
    host = make_host(fakes.empty(), distro='opensuse')
    result = host.run(name='ksmtuned', state='started')
    assert result['failed'] is True
    assert 'no package is known to provide it on openSUSE Leap 15.6' in result['msg']
    assert result['package'] is None


def test_ubuntu_without_any_ksm_unit_names_both_packages(make_host):
    host = make_host(fakes.empty(), distro='ubuntu2404')
    result = host.run(name='ksm', state='started')
    assert result['failed'] is True
    assert 'ksmtuned' in result['msg'] and 'qemu-system-common' in result['msg']
    assert 'qemu-kvm.service' in result['msg']


@pytest.mark.parametrize('distro', ['ubuntu2404', 'mint22'])
def test_ubuntu_qemu_kvm_service_plays_ksm(make_host, distro):
    host = make_host(fakes.ubuntu_qemu(active=False), distro=distro)
    first, second, third, fourth = host.four_steps(name='ksm', state='started')
    assert second['unit'] == 'qemu-kvm.service' and second['package'] == 'qemu-system-common'
    assert host.active('qemu-kvm.service')
    assert list(second['units']) == ['ksm']
    # and there is no ksmtuned there
    result = host.run(name='ksmtuned', state='started')
    assert result['failed'] is True and result['msg'].startswith('ksmtuned.service is not installed')


def test_qemu_kvm_service_is_not_ksm_outside_ubuntu(make_host):
    host = make_host(fakes.ubuntu_qemu(), distro='debian12')
    result = host.run(name='ksm', state='started')
    assert result['failed'] is True and result['msg'].startswith('ksm.service is not installed')


def test_ubuntu_with_ksmtuned_uses_ksm_service(make_host):
    systemd = fakes.debian(active=False)
    systemd.units['qemu-kvm.service'] = fakes.FakeUnit('qemu-kvm.service', active=True)
    host = make_host(systemd, distro='ubuntu2404')
    result = host.run(name='ksm', state='started')
    assert result['unit'] == KSM and result['package'] == 'ksmtuned'


def test_proxmox_has_ksmtuned_only(make_host):
    host = make_host(fakes.proxmox(active=False), distro='proxmox8', proxmox=True)
    result = host.run(name='ksm', state='started')
    assert result['failed'] is True
    assert result['msg'].startswith('Debian GNU/Linux 12 (bookworm) has no ksm unit')
    assert 'ksm-control-daemon' in result['msg'] and 'name=ksmtuned' in result['msg']
    first, second, third, fourth = host.four_steps(name='ksmtuned', state='started')
    assert second['package'] == 'ksm-control-daemon' and list(second['units']) == ['ksmtuned']
    result = host.run(name='ksmtuned', state='retuned')
    assert result['changed'] is True and any('Proxmox' in w for w in result['warnings'])


def test_proxmox_without_the_package(make_host):
    host = make_host(fakes.empty(), distro='proxmox8', proxmox=True)
    result = host.run(name='ksmtuned', state='started')
    assert result['failed'] is True
    assert 'package ksm-control-daemon' in result['msg'] and result['package'] == 'ksm-control-daemon'


def test_existing_units_win_over_the_tables(make_host):
    # a ksm.service on Proxmox (installed by hand) is used, and ksmtuned's own Requires= decides
    systemd = fakes.debian(active=False)
    systemd.unit(TUNED).requires = []
    host = make_host(systemd, distro='proxmox8', proxmox=True)
    result = host.run(name='ksm', state='started')
    assert result['failed'] is False and result['unit'] == KSM
    result = host.run(name='ksm', state='stopped')
    assert result['actions'] == ['stop ksm.service']
    result = host.run(name='ksmtuned', state='started')
    assert result['actions'] == ['start ksmtuned.service'] and not host.active(KSM)


# ---------------------------------------------------------------------------------------------------
# Conditions (RHEL's ConditionVirtualization=no inside a guest)

def test_start_skipped_by_condition_fails_clearly(make_host):
    host = make_host(fakes.rhel_guest(virt='kvm'), distro='rhel9')
    result = host.run(name='ksmtuned', state='started')
    assert result['failed'] is True
    assert 'did not start' in result['msg'] and 'ConditionResult=no' in result['msg']
    assert 'ConditionVirtualization=no' in result['msg'] and 'systemd-detect-virt: kvm' in result['msg']
    assert result['actions'] == ['start ksmtuned.service']
    assert result['units']['ksm']['after']['condition_result'] == 'no'
    assert not host.active(TUNED) and not host.active(KSM)
    # check mode cannot know in advance, but says what happened last time
    result = host.run(check_mode=True, name='ksmtuned', state='started')
    assert result['changed'] is True
    assert any('start condition was not met' in w for w in result['warnings'])


def test_never_started_unit_is_not_taken_for_a_failed_condition(make_host):
    # ConditionResult reads "no" before any start; that alone must not produce warnings
    host = make_host(fakes.debian(active=False))
    result = host.run(check_mode=True, name='ksm', state='started')
    assert result['units']['ksm']['before']['condition_result'] == 'no'
    assert result['warnings'] == []
    assert 'condition' not in result['diff']['before']


# ---------------------------------------------------------------------------------------------------
# Reporting

def test_diff_and_units_before_after(make_host):
    host = make_host(fakes.debian(active=True))
    result = host.run(diff=True, name='ksm', state='stopped', enabled=False)
    assert result['diff']['before'] == ('ksm.service: active (exited), enabled\n'
                                        'ksmtuned.service: active (running), enabled\n')
    assert result['diff']['after'] == ('ksm.service: inactive (dead), disabled\n'
                                       'ksmtuned.service: inactive (dead), enabled\n')
    assert set(result['units']) == {'ksm', 'ksmtuned'}
    assert set(result['units']['ksm']['after']) == {'unit', 'load_state', 'active_state', 'sub_state',
                                                    'unit_file_state', 'main_pid', 'condition_result'}
    assert result['units']['ksm']['unit'] == KSM


def test_unit_file_changed_on_disk_is_warned(make_host):
    systemd = fakes.debian(active=False)
    systemd.unit(KSM).need_daemon_reload = True
    host = make_host(systemd)
    result = host.run(name='ksm', state='started')
    assert result['changed'] is True
    assert any('daemon-reload' in w for w in result['warnings'])


def test_commands_are_argument_lists_with_lc_all_c(make_host):
    host = make_host(fakes.debian(active=False))
    host.run(name='ksmtuned', state='started', enabled=True)
    for call in host.systemd.calls:
        assert isinstance(call, list) and all(isinstance(arg, str) for arg in call)
    # (the fake asserts LC_ALL=C on every call)
