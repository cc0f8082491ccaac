# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ksm_tuner against a fake systemctl that follows systemd's rules (tests/unit/fakes/systemd.py), with its
files under tmp_path. The daemon itself: tests/unit/plugins/module_utils/test_ksm_tuner.py and
tests/system/test_ksm_tuner.py."""

import os
import subprocess
import sys

import pytest
import yaml

from ansible.module_utils import basic

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_tuner, _program, _systemd
from ansible_collections.samepage.ksm.plugins.modules import ksm_tuner
from ansible_collections.samepage.ksm.tests.unit.fakes import systemd as fakes
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.module_runner import run_main

UNIT = _ksm_tuner.UNIT_NAME


class TunerSystemd(fakes.FakeSystemd):
    """The fake systemd, plus daemon-reload: the tuner's unit exists once its file does."""

    def __init__(self, unit_path, **kwargs):
        super().__init__([], **kwargs)
        self.unit_path = unit_path
        self.daemon_reloads = 0

    def _daemon_reload(self, words):
        self.daemon_reloads += 1
        if os.path.exists(self.unit_path):
            self.units.setdefault(UNIT, fakes.FakeUnit(UNIT, 'forking', enabled='disabled', can_reload=True))
        elif UNIT in self.units:
            unit = self.units.pop(UNIT)
            if unit.active:
                self.events.append(('vanished while running', UNIT))
        return 0, '', ''


class Host:

    def __init__(self, tmp_path, monkeypatch, booted=True):
        self.root = tmp_path
        self.program_dir = str(tmp_path / 'usr-lib-samepage-ksm')
        self.config_path = str(tmp_path / 'etc' / 'samepage-ksm' / 'tuner.conf')
        self.unit_path = str(tmp_path / 'etc' / 'systemd' / 'system' / UNIT)
        self.systemd = TunerSystemd(self.unit_path, booted=booted)
        runtime = tmp_path / 'run-systemd-system'
        if booted:
            runtime.mkdir()
        monkeypatch.setattr(_systemd, 'RUNTIME_DIR', str(runtime))
        monkeypatch.setattr(ksm_tuner, 'PROGRAM_DIR', self.program_dir)
        monkeypatch.setattr(ksm_tuner, 'CONFIG_PATH', self.config_path)
        monkeypatch.setattr(ksm_tuner, 'UNIT_PATH', self.unit_path)
        monkeypatch.setattr(basic.AnsibleModule, 'run_command',
                            lambda module, args, **kwargs: self.systemd.run_command(args, **kwargs))
        monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path',
                            lambda module, name, required=False, opt_dirs=None: '/usr/bin/' + name)

    def run(self, check_mode=False, diff=False, **args):
        return run_main(ksm_tuner.main, args, check_mode=check_mode, diff=diff)

    def tree(self):
        """{relative path: text} of every file under tmp_path (what the module wrote)."""
        found = {}
        for base, dummy, names in os.walk(str(self.root)):
            for name in names:
                path = os.path.join(base, name)
                with open(path) as handle:
                    found[os.path.relpath(path, str(self.root))] = handle.read()
        return found

    def unit(self):
        return self.systemd.unit(UNIT)

    def four_steps(self, **args):
        tree = self.tree()
        calls = len(self.systemd.calls)
        first = self.run(check_mode=True, diff=True, **args)
        assert first['failed'] is False, first['msg']
        assert first['changed'] is True
        assert self.tree() == tree, 'check mode wrote files'
        assert not [c for c in self.systemd.calls[calls:] if c in self.systemd.mutating_calls()]
        second = self.run(diff=True, **args)
        assert second['failed'] is False, second['msg']
        assert second['changed'] is True
        assert first['actions'] == second['actions'] and first['files'] == second['files']
        assert first['status']['after']['active_state'] == second['status']['after']['active_state']
        assert first['status']['after']['unit_file_state'] == second['status']['after']['unit_file_state']
        third = self.run(**args)
        assert third['failed'] is False and third['changed'] is False
        assert third['actions'] == [] and third['files'] == []
        calls = len(self.systemd.calls)
        fourth = self.run(check_mode=True, **args)
        assert fourth['failed'] is False and fourth['changed'] is False
        assert all(c[1] in fakes.QUERIES for c in self.systemd.calls[calls:])
        return first, second, third, fourth


@pytest.fixture
def host(tmp_path, monkeypatch):
    return Host(tmp_path, monkeypatch)


def test_install_and_start(host):
    first, second, third, fourth = host.four_steps()
    assert second['actions'] == ['daemon-reload', 'enable %s' % UNIT, 'start %s' % UNIT]
    assert host.unit().active and host.unit().enablement == 'enabled'
    assert second['status']['before']['load_state'] == 'not-found'
    assert second['status']['after']['active_state'] == 'active'
    assert second['config'] == _ksm_tuner.DEFAULTS
    assert second['state_file'] == '/run/samepage-ksm/tuner.json'
    tree = host.tree()
    package = os.path.join('usr-lib-samepage-ksm', _program.PACKAGE)
    assert sorted(p for p in tree if p.startswith('usr-lib')) == sorted(
        [os.path.join('usr-lib-samepage-ksm', _ksm_tuner.ENTRY), os.path.join(package, '__init__.py')]
        + [os.path.join(package, name) for name in _ksm_tuner.SOURCES])
    # one source of truth: the installed program is the module_utils code, byte for byte
    here = os.path.dirname(_ksm_tuner.__file__)
    for name in _ksm_tuner.SOURCES:
        with open(os.path.join(here, name)) as handle:
            assert tree[os.path.join(package, name)] == handle.read()
    unit = tree[os.path.join('etc', 'systemd', 'system', UNIT)]
    entry = '%s/samepage-ksm-tuner' % host.program_dir
    assert 'ExecStart=%s -I %s --config %s' % (sys.executable, entry, host.config_path) in unit
    for line in ('NoNewPrivileges=yes', 'ProtectSystem=strict', 'ReadWritePaths=/sys/kernel/mm/ksm',
                 'ExecReload=/bin/kill -HUP $MAINPID', 'Restart=on-failure', 'RestartPreventExitStatus=78',
                 'RuntimeDirectory=samepage-ksm', 'StateDirectory=samepage-ksm', 'Conflicts=ksmtuned.service'):
        assert line in unit.splitlines()
    # the diff shows the configuration and the unit appearing
    assert [d['after_header'] for d in second['diff']] == [host.config_path, host.unit_path]
    assert second['diff'][0]['before'] == '' and '[tuner]' in second['diff'][0]['after']
    assert os.stat(host.config_path).st_mode & 0o777 == 0o644


def test_installed_program_runs(host, tmp_path):
    host.run(config={'cpu_budget': 10})
    entry = os.path.join(host.program_dir, _ksm_tuner.ENTRY)
    result = subprocess.run([sys.executable, '-I', entry, '--config', host.config_path, '--check-config'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert b'is valid' in result.stdout


def test_config_change_restarts_once(host):
    host.run(config={'cpu_budget': 10})
    pid = host.unit().pid
    first, second, third, fourth = host.four_steps(config={'cpu_budget': 5, 'pressure_gate': 20})
    assert second['actions'] == ['restart %s' % UNIT]
    assert second['files'] == [host.config_path]
    assert host.unit().pid != pid and host.systemd.daemon_reloads == 1
    assert 'cpu_budget = 10' in second['diff'][0]['before'] and 'cpu_budget = 5' in second['diff'][0]['after']
    assert second['diff'][1]['before'] == second['diff'][1]['after']
    assert second['config']['cpu_budget'] == 5 and second['config']['pressure_gate'] == 20


def test_python_change_rewrites_the_unit_and_reloads(host):
    host.run()
    result = host.run(python='/bin/sh')
    assert result['failed'] is False
    assert result['actions'] == ['daemon-reload', 'restart %s' % UNIT]
    assert result['files'] == [host.unit_path]


@pytest.mark.parametrize('config,fragment', [
    ({'cpu_budget': 0}, "Invalid value 0 for cpu_budget: expected a number from 0.1 to 100"),
    ({'cpu_budget': 'lots'}, "Invalid value 'lots' for cpu_budget"),
    ({'budget_window': 1.5}, 'budget_window'),
    ({'log_level': 'loud'}, "'loud' for log_level: expected one of debug, info, warning, error"),
    ({'cpu_budgett': 5}, "Unknown key 'cpu_budgett'"),
    ({'pressure_gate': True}, 'pressure_gate'),
])
def test_invalid_config_fails_with_nothing_changed(host, config, fragment):
    result = host.run(config=config)
    assert result['failed'] is True and result['changed'] is False
    assert fragment in result['msg'] and 'Nothing was changed' in result['msg']
    assert host.tree() == {} and host.systemd.calls == []


def test_invalid_config_leaves_a_running_tuner_alone(host):
    host.run(config={'cpu_budget': 10})
    tree = host.tree()
    calls = len(host.systemd.calls)
    result = host.run(config={'cpu_budget': 1000})
    assert result['failed'] is True and host.tree() == tree and len(host.systemd.calls) == calls


def test_no_systemd_is_a_clear_error(tmp_path, monkeypatch):
    host = Host(tmp_path, monkeypatch, booted=False)
    result = host.run()
    assert result['failed'] is True
    assert 'systemd is not running as PID 1' in result['msg'] and 'Nothing was changed' in result['msg']
    assert host.tree() == {} and host.systemd.calls == []


def test_relative_python_is_refused(host):
    result = host.run(python='python3')
    assert result['failed'] is True and "Invalid python 'python3'" in result['msg']
    assert host.tree() == {}


def test_empty_python_is_refused_not_taken_for_the_default(host):
    # An empty value (a variable that rendered to nothing) is not "unset": the daemon would otherwise
    # quietly run under the interpreter of this module run.
    result = host.run(python='')
    assert result['failed'] is True and result['changed'] is False
    assert "Invalid python '': expected the absolute path of a Python 3.8+ interpreter" in result['msg']
    assert 'leave python unset' in result['msg']
    assert host.tree() == {} and host.systemd.calls == []


def test_stopped_and_disabled(host):
    host.run()
    first, second, third, fourth = host.four_steps(state='stopped', enabled=False)
    assert second['actions'] == ['disable %s' % UNIT, 'stop %s' % UNIT]
    assert not host.unit().active and host.unit().enablement == 'disabled'


def test_installed_stopped_from_scratch(host):
    first, second, third, fourth = host.four_steps(state='stopped')
    assert second['actions'] == ['daemon-reload', 'enable %s' % UNIT]
    assert not host.unit().active


def test_absent_removes_everything(host):
    host.run(config={'cpu_budget': 10})
    first, second, third, fourth = host.four_steps(state='absent')
    assert second['actions'] == ['stop %s' % UNIT, 'disable %s' % UNIT, 'daemon-reload']
    assert host.tree() == {}
    assert UNIT not in host.systemd.units
    assert not os.path.exists(host.program_dir)
    assert 'cpu_budget = 10' in second['diff'][0]['before'] and second['diff'][0]['after'] == ''


def test_absent_on_a_clean_host_changes_nothing(host):
    result = host.run(state='absent')
    assert result['failed'] is False and result['changed'] is False and result['actions'] == []


def test_unit_that_fails_to_start_is_reported(host, monkeypatch):
    original = host.systemd._activate

    def activate(name):
        original(name)
        host.systemd.units[name].active = False     # the daemon exited at once
    monkeypatch.setattr(host.systemd, '_activate', activate)
    result = host.run()
    assert result['failed'] is True
    assert 'systemctl reported success, but %s is inactive' % UNIT in result['msg']
    assert 'journalctl -u %s' % UNIT in result['msg']
    assert result['actions'] == ['daemon-reload', 'enable %s' % UNIT, 'start %s' % UNIT]


def test_documentation_lists_every_setting_with_its_default():
    doc = yaml.safe_load(ksm_tuner.DOCUMENTATION)
    text = ' '.join(doc['options']['config']['description'])
    for setting in _ksm_tuner.SCHEMA:
        default = setting.default if setting.kind == 'choice' else _ksm_tuner.format_number(setting.default)
        assert 'C(%s) (default V(%s))' % (setting.key, default) in text or \
            ('C(%s)' % setting.key in text and 'default V(%s)' % default in text), setting.key


def test_systemctl_missing_is_a_clear_error(host, monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path', lambda module, name, required=False, opt_dirs=None: None)
    result = host.run()
    assert result['failed'] is True
    assert 'systemctl is not installed on this host' in result['msg']
    assert host.tree() == {}
