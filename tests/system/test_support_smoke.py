# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The test helpers themselves, against real ansible runs and the real kernel."""

import base64
import os
import subprocess
import sys

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.tests.support.ansible_cli import run_module, run_playbook
from ansible_collections.samepage.ksm.tests.support.host_packages import end_process
from ansible_collections.samepage.ksm.tests.support.ksm_host import LOCK_PATH, ksm_host_guard
from ansible_collections.samepage.ksm.tests.support.merge_workload import MergeableWorkload


@pytest.mark.every_controller
def test_run_module_returns_the_host_result():
    result = run_module('ansible.builtin.ping', {'data': 'samepage'})
    assert result['ping'] == 'samepage'
    assert result['changed'] is False
    assert result['failed'] is False


def test_run_module_reads_a_knob_like_the_layer_does(ksm_host):
    result = run_module('ansible.builtin.slurp', {'src': os.path.join(_ksm.KSM_DIR, 'pages_to_scan')})
    assert result['failed'] is False, result.output
    text = base64.b64decode(result['content']).decode('ascii')
    assert _ksm.parse('pages_to_scan', text) == ksm_host.state()['pages_to_scan']


@pytest.mark.every_controller
def test_run_module_reports_a_failure_with_its_message():
    result = run_module('ansible.builtin.slurp', {'src': '/nonexistent/samepage'})
    assert result['failed'] is True
    assert 'nonexistent' in result['msg']


@pytest.mark.every_controller
def test_run_module_check_and_diff(tmp_path):
    target = tmp_path / 'file.txt'
    target.write_text('old\n')
    args = {'path': str(target), 'line': 'new', 'regexp': '^old$'}
    checked = run_module('ansible.builtin.lineinfile', args, check=True, diff=True)
    assert checked['changed'] is True and target.read_text() == 'old\n'
    assert checked['diff'][0]['after'] == 'new\n'
    applied = run_module('ansible.builtin.lineinfile', args)
    assert applied['changed'] is True and target.read_text() == 'new\n'
    assert run_module('ansible.builtin.lineinfile', args)['changed'] is False


@pytest.mark.every_controller
def test_run_playbook_stats_and_results(tmp_path):
    playbook = tmp_path / 'play.yml'
    playbook.write_text(
        '- name: Smoke\n'
        '  hosts: localhost\n'
        '  gather_facts: false\n'
        '  tasks:\n'
        '    - name: Echo\n'
        '      ansible.builtin.debug:\n'
        '        msg: "{{ greeting }}"\n'
        '    - name: Skipped\n'
        '      ansible.builtin.debug:\n'
        '        msg: never\n'
        '      when: false\n'
        '    - name: Fails\n'
        '      ansible.builtin.fail:\n'
        '        msg: on purpose\n')
    run = run_playbook(str(playbook), extra_vars={'greeting': 'hello'})
    assert run.rc == 2, run.output
    assert run.stats['localhost']['ok'] == 1
    assert run.stats['localhost']['skipped'] == 1
    assert run.stats['localhost']['failed'] == 1
    assert [item['task'] for item in run.results] == ['Echo', 'Skipped', 'Fails']
    assert run.results_for('Echo')[0]['result']['msg'] == 'hello'
    assert run.results_for('Fails')[0]['status'] == 'failed'
    assert run.results_for('Fails')[0]['action'] == 'ansible.builtin.fail'


def test_guard_holds_the_host_lock(ksm_host):
    probe = ('import fcntl, sys\n'
             'handle = open(sys.argv[1], "a+")\n'
             'try:\n'
             '    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)\n'
             'except OSError:\n'
             '    sys.exit(3)\n')
    assert subprocess.call([sys.executable, '-c', probe, LOCK_PATH]) == 3


def test_guard_restores_knobs_and_unmerges_a_real_workload(ksm_host):
    before = dict(ksm_host.snapshot)
    changed = {'run': 1, 'pages_to_scan': 5000, 'sleep_millisecs': 10}
    if 'max_page_sharing' in before:
        changed['max_page_sharing'] = 128 if before['max_page_sharing'] != 128 else 64
    if 'stable_node_chains_prune_millisecs' in before:
        changed['stable_node_chains_prune_millisecs'] = before['stable_node_chains_prune_millisecs'] + 1
    with ksm_host_guard() as inner:
        inner.set(**changed)
        with MergeableWorkload(mib=32) as workload:
            counters = workload.wait_for_sharing(1, timeout=180)
            assert counters['pages_sharing'] > 0 and counters['pages_shared'] > 0
            # Knobs that need no shared pages are refused (EBUSY) now: the restore must unmerge first.
            assert inner.state()['max_page_sharing'] == changed['max_page_sharing']
    state = ksm_host.state()
    assert state['pages_shared'] == 0
    assert state['pages_sharing'] == 0
    for name, value in before.items():
        assert state[name] == value, name
    assert ksm_host.differences() == {}


def test_guard_restores_when_the_body_fails(ksm_host):
    before = dict(ksm_host.snapshot)
    with pytest.raises(ZeroDivisionError):
        with ksm_host_guard() as inner:
            inner.set(sleep_millisecs=before['sleep_millisecs'] + 7)
            assert inner.differences() == {'sleep_millisecs': (before['sleep_millisecs'],
                                                               before['sleep_millisecs'] + 7)}
            raise ZeroDivisionError('the test body failed')
    assert ksm_host.differences() == {}


# A child that ignores SIGTERM, says so, then reads its standard input until the end and exits 0.
DEAF_TO_SIGTERM = ('import signal, sys\n'
                   'signal.signal(signal.SIGTERM, signal.SIG_IGN)\n'
                   'print("ready", flush=True)\n'
                   'sys.stdin.buffer.read() if sys.argv[1:] == ["read"] else signal.pause()\n')


def deaf_child(*args):
    process = subprocess.Popen([sys.executable, '-c', DEAF_TO_SIGTERM] + list(args), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE)
    assert process.stdout.readline() == b'ready\n'
    return process


def test_end_process_closes_standard_input_first():
    # SIGTERM is ignored: only the end of its input ends this child, well before the timeout (then SIGKILL).
    process = deaf_child('read')
    end_process(process, timeout=120)
    assert process.returncode == 0
    assert process.stdin.closed and process.stdout.closed


def test_end_process_kills_what_outlives_the_timeout():
    process = deaf_child()
    end_process(process, timeout=1)
    assert process.returncode == -9
    assert process.stdin.closed and process.stdout.closed
