# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The tuner daemon on this machine's real KSM, installed the way samepage.ksm.ksm_tuner installs it
(a package of copies of the module_utils sources and the entry script), run in the foreground.

Behaviour is asserted, never timings: every wait has a generous timeout."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_tuner, _program
from ansible_collections.samepage.ksm.plugins.modules import ksm_tuner
from ansible_collections.samepage.ksm.tests.support.ansible_cli import run_module
from ansible_collections.samepage.ksm.tests.support.merge_workload import MergeableWorkload

PAGE = os.sysconf('SC_PAGE_SIZE')


def wait_for(what, predicate, timeout=60, interval=0.1):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError('timed out after %s s waiting for %s' % (timeout, what))
        time.sleep(interval)


class Daemon:
    """samepage-ksm-tuner installed under tmp_path and run in the foreground."""

    def __init__(self, tmp_path, config):
        self.files = ksm_tuner.program_files(_program.read_sources(_ksm_tuner.SOURCES), str(tmp_path / 'lib'))
        for path, text in self.files.items():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w') as handle:
                handle.write(text)
        self.entry = os.path.join(str(tmp_path / 'lib'), _ksm_tuner.ENTRY)
        self.config = tmp_path / 'tuner.conf'
        self.config.write_text(_ksm_tuner.render(config))
        self.state = tmp_path / 'run' / 'tuner.json'
        self.log_path = tmp_path / 'tuner.log'
        self.process = None

    def command(self):
        return [sys.executable, '-I', self.entry, '--config', str(self.config), '--state', str(self.state)]

    def start(self):
        self.log_handle = open(str(self.log_path), 'w')
        self.process = subprocess.Popen(self.command(), stdout=self.log_handle, stderr=subprocess.STDOUT)
        return self

    def log(self):
        return self.log_path.read_text() if self.log_path.exists() else ''

    def status(self):
        try:
            return json.loads(self.state.read_text())
        except (OSError, ValueError):
            return {}

    def signal(self, number):
        self.process.send_signal(number)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            self.log_handle.close()


def knobs(host):
    state = host.state()
    return state['run'], state['pages_to_scan'], state['sleep_millisecs']


def test_daemon_merges_backs_off_kicks_and_rests(ksm_host, tmp_path):
    ksm_host.set(run=0, pages_to_scan=100, sleep_millisecs=20)
    daemon = Daemon(tmp_path, {'idle_sleep_millisecs': 200, 'process_poll_seconds': 1})
    with MergeableWorkload(mib=64) as workload:
        daemon.start()
        try:
            # merges: the fast phase, then most of the 64 MiB shared
            wait_for('pages_sharing to reach 90 % of the workload',
                     lambda: ksm_host.state()['pages_sharing'] >= 0.9 * 64 * 1024 * 1024 // PAGE)
            assert 'phase=fast run=1 pages_to_scan=20000 sleep_millisecs=0' in daemon.log()
            # backs off: a full scan gains nothing any more
            wait_for('the idle phase', lambda: daemon.status().get('phase') == 'idle')
            assert knobs(ksm_host)[1:] == (100, 200) or daemon.status()['sleep_millisecs'] > 200
            status = daemon.status()
            assert status['run'] == 1 and status['pages_to_scan'] == 100
            assert status['last_gain'] < 64 and status['pid'] == daemon.process.pid
            assert 'converged' in status['reason'] and status['config'] == str(daemon.config)
            # a kick (what systemctl reload sends) starts a fast phase at once
            daemon.signal(signal.SIGHUP)
            wait_for('the kick in the log', lambda: 'kick (SIGHUP)' in daemon.log())
            wait_for('the idle phase again', lambda: daemon.status().get('phase') == 'idle'
                     and daemon.log().count('phase=idle') >= 2)
            # a new process with mergeable memory is noticed without a kick
            with MergeableWorkload(mib=16) as late:
                wait_for('the late arrival in the log',
                         lambda: 'new process with mergeable memory (pid %d' % late.pid in daemon.log())
            sharing = ksm_host.state()['pages_sharing']
            # SIGTERM: the resting state (idle rate, run=1, merged pages kept), exit status 0
            daemon.signal(signal.SIGTERM)
            assert daemon.process.wait(timeout=30) == 0
            assert knobs(ksm_host) == (1, 100, 200)
            assert ksm_host.state()['pages_sharing'] >= 0.9 * sharing
            assert daemon.status()['phase'] == 'stopped'
            assert 'phase=stopped' in daemon.log()
        finally:
            daemon.stop()
        assert workload.merging_pages() is None or workload.merging_pages() > 0


@pytest.mark.parametrize('line,key', [('cpu_budget = 500', 'cpu_budget'), ('cpu_budgett = 5', 'cpu_budgett'),
                                      ('log_level = loud', 'log_level')])
def test_bad_configuration_refuses_to_start_naming_the_key(tmp_path, line, key):
    daemon = Daemon(tmp_path, {})
    daemon.config.write_text('[tuner]\n%s\n' % line)
    result = subprocess.run(daemon.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                            check=False)
    assert result.returncode == _ksm_tuner.EXIT_CONFIG
    err = result.stderr.decode()
    assert 'refusing to start' in err and key in err and str(daemon.config) in err
    assert not daemon.state.exists()


@pytest.mark.every_controller
@pytest.mark.skipif(os.path.isdir('/run/systemd/system'), reason='systemd runs as PID 1 here: the lab covers it')
@pytest.mark.parametrize('check', [False, True])
def test_module_without_systemd_a_clear_failure_after_loading_the_program(check):
    """Through a real AnsiballZ run: the module reads the program's sources through the module loader
    (which fails with its own message) before it finds that systemd is not PID 1, and changes nothing."""
    result = run_module('samepage.ksm.ksm_tuner', {'config': {'cpu_budget': 10}}, check=check, diff=True)
    assert result['failed'] is True and result['changed'] is False
    assert result['msg'].startswith('systemd is not running as PID 1 on this host'), result['msg']
    assert 'Traceback (most recent call last)' not in result.output
    assert not os.path.exists(_ksm_tuner.UNIT_PATH) and not os.path.exists(_ksm_tuner.DEFAULT_CONFIG_PATH)


@pytest.mark.every_controller
def test_module_refuses_a_bad_config_naming_the_key():
    result = run_module('samepage.ksm.ksm_tuner', {'config': {'cpu_budget': 500}})
    assert result['failed'] is True and result['changed'] is False
    assert 'cpu_budget' in result['msg'] and 'Nothing was changed' in result['msg']
