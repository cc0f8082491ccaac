# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ksm_metrics against a fake systemctl that follows systemd's rules (tests/unit/fakes/systemd.py) and the fake
KSM host, with its files under tmp_path; starting the service runs the installed program as the unit would.
The exposition itself: tests/unit/plugins/module_utils/test_ksm_metrics.py; the real thing:
tests/system/test_metrics.py and tests/lab/test_lab_metrics.py."""

import os
import subprocess
import sys

import pytest

from ansible.module_utils import basic

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_metrics, _ksm_tuner, _program, _systemd
from ansible_collections.samepage.ksm.plugins.modules import ksm_metrics
from ansible_collections.samepage.ksm.tests.unit.fakes import systemd as fakes
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.fake_host import FakeHost
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.module_runner import run_main

TIMER = _ksm_metrics.TIMER_NAME
SERVICE = _ksm_metrics.SERVICE_NAME


class MetricsSystemd(fakes.FakeSystemd):
    """The fake systemd, plus daemon-reload (the units exist once their files do) and a oneshot service that
    runs the metrics program when started (without RemainAfterExit: inactive again once it has run)."""

    def __init__(self, host, **kwargs):
        super().__init__([], **kwargs)
        self.host = host
        self.daemon_reloads = 0
        self.program_runs = 0
        self.program_fails = False

    def _daemon_reload(self, words):
        self.daemon_reloads += 1
        for name, path, kind, enabled in ((TIMER, self.host.timer_path, 'timer', 'disabled'),
                                          (SERVICE, self.host.service_path, 'oneshot', 'static')):
            if os.path.exists(path):
                self.units.setdefault(name, fakes.FakeUnit(name, kind, enabled=enabled))
            elif name in self.units:
                self.units.pop(name)
        return 0, '', ''

    def _start(self, words):
        if words[0] != SERVICE:
            return super()._start(words)
        refused = self._check_start('start', SERVICE)
        if refused:
            return refused
        self.program_runs += 1
        self.events.append(('run', SERVICE))
        status = 1 if self.program_fails else self.host.run_program()
        if status:
            return 1, '', ('Job for %s failed because the control process exited with error code.\n'
                           'See "systemctl status %s" and "journalctl -xeu %s" for details.\n' % (SERVICE, SERVICE,
                                                                                                  SERVICE))
        return 0, '', ''


class Host:

    def __init__(self, tmp_path, monkeypatch, booted=True):
        self.root = tmp_path / 'host'
        self.root.mkdir()
        self.kernel_host = FakeHost(tmp_path, monkeypatch, preset='6.12', run=1)
        self.kernel_host.kernel.share(100, 1500)
        monkeypatch.setattr(_ksm_tuner, 'DEFAULT_STATE_PATH', str(self.kernel_host.tuner_state))
        monkeypatch.setattr(_ksm_tuner, 'UNIT_PATH', str(self.kernel_host.tuner_unit))
        self.program_dir = str(self.root / 'usr' / 'lib' / 'samepage-ksm' / 'metrics')
        self.service_path = str(self.root / 'etc' / 'systemd' / 'system' / SERVICE)
        self.timer_path = str(self.root / 'etc' / 'systemd' / 'system' / TIMER)
        self.directory = str(self.root / 'var' / 'lib' / 'prometheus' / 'node-exporter')
        self.output = os.path.join(self.directory, 'samepage_ksm.prom')
        self.systemd = MetricsSystemd(self, booted=booted)
        runtime = tmp_path / 'run-systemd-system'
        if booted:
            runtime.mkdir()
        monkeypatch.setattr(_systemd, 'RUNTIME_DIR', str(runtime))
        monkeypatch.setattr(ksm_metrics, 'PROGRAM_DIR', self.program_dir)
        monkeypatch.setattr(ksm_metrics, 'SERVICE_PATH', self.service_path)
        monkeypatch.setattr(ksm_metrics, 'TIMER_PATH', self.timer_path)
        monkeypatch.setattr(basic.AnsibleModule, 'run_command',
                            lambda module, args, **kwargs: self.systemd.run_command(args, **kwargs))
        monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path',
                            lambda module, name, required=False, opt_dirs=None: '/usr/bin/' + name)

    def run_program(self):
        """What the service's ExecStart does: the installed program's main() with the unit's arguments. It
        runs in this process (against the fake kernel), from the package the module installed."""
        with open(self.service_path) as handle:
            exec_start = [line for line in handle.read().splitlines() if line.startswith('ExecStart=')][0]
        words = exec_start.split()
        assert words[1:3] == ['-I', os.path.join(self.program_dir, _ksm_metrics.ENTRY)]
        arguments = [word.replace('%%', '%') for word in words[3:]]
        return _ksm_metrics.main(arguments)

    def run(self, check_mode=False, diff=False, **args):
        args.setdefault('directory', self.directory)
        return run_main(ksm_metrics.main, args, check_mode=check_mode, diff=diff)

    def tree(self):
        """{relative path: text} of every file under the host's root (what the module wrote), and its directories."""
        found = {}
        for base, dirs, names in os.walk(str(self.root)):
            for name in dirs:
                found[os.path.relpath(os.path.join(base, name), str(self.root)) + '/'] = None
            for name in names:
                path = os.path.join(base, name)
                with open(path) as handle:
                    found[os.path.relpath(path, str(self.root))] = handle.read()
        return found

    def unit(self, name=TIMER):
        return self.systemd.unit(name)

    def mutating(self, since):
        return [call for call in self.systemd.calls[since:] if call[1] not in fakes.QUERIES]

    def four_steps(self, **args):
        tree = self.tree()
        calls = len(self.systemd.calls)
        first = self.run(check_mode=True, diff=True, **args)
        assert first['failed'] is False, first['msg']
        assert first['changed'] is True
        assert self.tree() == tree, 'check mode wrote files'
        assert self.mutating(calls) == []
        second = self.run(diff=True, **args)
        assert second['failed'] is False, second['msg']
        assert second['changed'] is True
        assert first['actions'] == second['actions'] and first['files'] == second['files']
        assert first['status']['after']['active_state'] == second['status']['after']['active_state']
        assert first['status']['after']['sub_state'] == second['status']['after']['sub_state']
        assert first['status']['after']['unit_file_state'] == second['status']['after']['unit_file_state']
        tree = self.tree()
        third = self.run(**args)
        assert third['failed'] is False and third['changed'] is False
        assert third['actions'] == [] and third['files'] == []
        calls = len(self.systemd.calls)
        fourth = self.run(check_mode=True, **args)
        assert fourth['failed'] is False and fourth['changed'] is False
        assert self.mutating(calls) == []
        assert self.tree() == tree
        return first, second, third, fourth


@pytest.fixture
def host(tmp_path, monkeypatch):
    return Host(tmp_path, monkeypatch)


def test_install_runs_the_timer_and_writes_the_file(host):
    first, second, third, fourth = host.four_steps()
    assert second['actions'] == ['daemon-reload', 'enable %s' % TIMER, 'start %s' % TIMER, 'start %s' % SERVICE]
    assert host.unit().active and host.unit().enablement == 'enabled'
    assert second['status']['before']['load_state'] == 'not-found'
    assert second['status']['after']['active_state'] == 'active'
    assert second['status']['after']['sub_state'] == 'waiting'
    assert second['unit'] == TIMER and second['service'] == SERVICE
    assert second['output'] == host.output and second['interval'] == 60
    # the directory is created first, then the files, all of them listed
    assert second['files'][0] == host.directory
    assert sorted(second['files'][1:]) == sorted(
        [os.path.join(host.program_dir, _ksm_metrics.ENTRY), os.path.join(host.program_dir, 'samepage_ksm', '__init__.py'),
         host.service_path, host.timer_path]
        + [os.path.join(host.program_dir, 'samepage_ksm', name) for name in _ksm_metrics.SOURCES])
    # one source of truth: the installed program is the module_utils code, byte for byte
    here = os.path.dirname(_ksm_metrics.__file__)
    for name in _ksm_metrics.SOURCES:
        with open(os.path.join(here, name)) as handle, \
                open(os.path.join(host.program_dir, 'samepage_ksm', name)) as installed:
            assert installed.read() == handle.read(), name
    # the service ran once, and its file is there
    assert host.systemd.program_runs == 1
    with open(host.output) as handle:
        text = handle.read()
    assert 'samepage_ksm_pages_sharing 1500\n' in text and 'samepage_ksm_snapshot_success 1\n' in text
    assert [d['after_header'] for d in second['diff']] == [host.service_path, host.timer_path]
    assert second['diff'][0]['before'] == '' and 'Type=oneshot' in second['diff'][0]['after']
    assert 'OnUnitActiveSec=60s' in second['diff'][1]['after']
    unit = host.tree()[os.path.relpath(host.service_path, str(host.root))]
    assert ('ExecStart=%s -I %s/samepage-ksm-metrics --output %s --memory-margin 5%%%%'
            % (sys.executable, host.program_dir, host.output)) in unit.splitlines()
    assert 'ReadWritePaths=%s' % host.directory in unit.splitlines()


def test_installed_program_runs_as_the_unit_runs_it(host):
    host.run()
    os.unlink(host.output)
    entry = os.path.join(host.program_dir, _ksm_metrics.ENTRY)
    result = subprocess.run([sys.executable, '-I', entry, '--version'], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert b'samepage-ksm-metrics 0.1.0' in result.stdout + result.stderr


def test_interval_change_rewrites_the_timer_and_refreshes_once(host):
    host.run()
    runs = host.systemd.program_runs
    first, second, third, fourth = host.four_steps(interval=15)
    assert second['actions'] == ['daemon-reload', 'restart %s' % TIMER, 'start %s' % SERVICE]
    assert second['files'] == [host.timer_path]
    assert 'OnUnitActiveSec=60s' in second['diff'][1]['before'] and 'OnUnitActiveSec=15s' in second['diff'][1]['after']
    assert second['diff'][0]['before'] == second['diff'][0]['after']
    assert host.systemd.program_runs == runs + 1 and host.systemd.daemon_reloads == 2


def test_margin_change_rewrites_the_service(host):
    host.run()
    result = host.run(memory_margin='2G')
    assert result['changed'] is True and result['files'] == [host.service_path]
    assert result['actions'] == ['daemon-reload', 'restart %s' % TIMER, 'start %s' % SERVICE]
    with open(host.output) as handle:
        assert 'samepage_ksm_unmerge_margin_bytes %d\n' % (2 << 30) in handle.read()


def test_a_stopped_timer_is_started_again(host):
    host.run()
    host.systemd.run_command(['systemctl', 'stop', TIMER], environ_update={'LC_ALL': 'C'})
    result = host.run()
    assert result['changed'] is True and result['files'] == []
    assert result['actions'] == ['start %s' % TIMER, 'start %s' % SERVICE]


def test_absent_removes_everything_but_the_directory(host):
    host.run()
    other = os.path.join(host.directory, 'other.prom')
    with open(other, 'w') as handle:
        handle.write('# somebody else\n')
    first, second, third, fourth = host.four_steps(state='absent')
    assert second['actions'] == ['stop %s' % TIMER, 'disable %s' % TIMER, 'daemon-reload']
    assert host.output in second['files'] and host.timer_path in second['files']
    assert not os.path.exists(host.output) and os.path.exists(other)
    assert not os.path.exists(host.program_dir) and not os.path.exists(os.path.dirname(host.program_dir))
    assert TIMER not in host.systemd.units and SERVICE not in host.systemd.units
    assert 'interval' not in second
    tree = host.tree()
    assert [path for path in tree if tree[path] is not None] == [os.path.relpath(other, str(host.root))]


def test_absent_on_a_clean_host_changes_nothing(host):
    result = host.run(state='absent')
    assert result['failed'] is False and result['changed'] is False
    assert result['actions'] == [] and result['files'] == []
    assert host.mutating(0) == []


def test_a_program_that_fails_fails_the_task_saying_what_happened(host):
    host.systemd.program_fails = True
    result = host.run()
    assert result['failed'] is True
    assert 'systemctl start -- %s failed' % SERVICE in result['msg'] and 'journalctl -xeu' in result['msg']
    assert result['actions'] == ['daemon-reload', 'enable %s' % TIMER, 'start %s' % TIMER]
    assert result['changed'] is True and host.timer_path in result['files']
    host.systemd.program_fails = False
    again = host.run()
    # the files are in place and the timer runs: nothing to do, the next tick will try again
    assert again['failed'] is False and again['changed'] is False


@pytest.mark.parametrize('args,fragment', [
    ({'interval': 1}, 'Invalid interval 1: expected whole seconds from 5 to 86400'),
    ({'interval': 100000}, 'Invalid interval 100000'),
    ({'memory_margin': '5 parsecs'}, "Invalid memory margin '5 parsecs' (option memory_margin)"),
    ({'directory': '/var/lib/node exporter'}, "Invalid directory '/var/lib/node exporter'"),
    ({'directory': 'textfiles'}, "Invalid directory '"),
    ({'python': 'python3'}, "Invalid python 'python3'"),
    ({'python': '/nonexistent/python3'}, 'python /nonexistent/python3 is not an executable file'),
])
def test_invalid_input_fails_with_nothing_changed(host, args, fragment):
    result = host.run(**args)
    assert result['failed'] is True and result['changed'] is False
    assert fragment in result['msg'], result['msg']
    assert host.tree() == {} and host.systemd.calls == []


def test_no_systemd_is_a_clear_error(tmp_path, monkeypatch):
    host = Host(tmp_path, monkeypatch, booted=False)
    result = host.run()
    assert result['failed'] is True
    assert 'systemd is not running as PID 1' in result['msg'] and 'Nothing was changed' in result['msg']
    assert host.tree() == {} and host.systemd.calls == []


def test_documentation_names_what_the_code_uses():
    import yaml
    doc = yaml.safe_load(ksm_metrics.DOCUMENTATION)
    assert doc['options']['directory']['default'] == _ksm_metrics.DEFAULT_DIRECTORY
    assert doc['options']['interval']['default'] == _ksm_metrics.DEFAULT_INTERVAL
    assert doc['options']['memory_margin']['default'] == '5%'
    assert set(doc['options']) == set(ksm_metrics.argument_spec())
    assert _program.PACKAGE in ksm_metrics.program_files({})[os.path.join(ksm_metrics.PROGRAM_DIR, _ksm_metrics.ENTRY)]
