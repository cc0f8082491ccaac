# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The secure self-check (entry point verify of samepage.ksm.ksm) and the per-guest opt-out of the role, run by
the real ansible-playbook on this machine: its real KSM (inside the host guard, every knob restored), real
processes, and a real libvirtd of the test's own (tests/support/libvirt_daemon.py).

PID 1 here is not systemd: the service check cannot be made, and the check fails saying so (not a silent pass);
with ksm_verify_services: false it is left out knowingly and the success message says so. run=0 passes; a process
opted in with prctl(PR_SET_MEMORY_MERGE), and run=1 with pages shared, fail naming them. The role's nosharepages
task file opts real libvirt domains out; verify with ksm_verify_nosharepages names the domain left sharing.
"""

import json
import os
import shutil
import tempfile

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.plugins.module_utils import _libvirt
from ansible_collections.samepage.ksm.tests.support.ansible_cli import run_playbook
from ansible_collections.samepage.ksm.tests.support.libvirt_daemon import PrivateLibvirtd, skip_reason, tiny_domain
from ansible_collections.samepage.ksm.tests.support.merge_workload import MergeableWorkload, wait_for_sharing

pytestmark = pytest.mark.skipif(not os.path.isdir(_ksm.KSM_DIR), reason='this kernel has no KSM')

VERIFY_TASK = 'Check that nothing shares memory here, or could switch sharing on'
OPT_OUT_TASK = 'Make the guests carry nosharepages (QEMU mem-merge=off)'
REPORT_TASK = 'Report the guests that could not be opted out'
NO_SERVICES = {'ksm_verify_services': False}
TRUSTED = 'samepage-trusted'
TENANT = 'samepage-tenant'


def role(tasks_from, variables):
    """ansible-playbook of one entry point of samepage.ksm.ksm on localhost, with variables as play vars."""
    directory = tempfile.mkdtemp(prefix='samepage-secure-')
    try:
        path = os.path.join(directory, 'play.yml')
        with open(path, 'w') as handle:
            json.dump([{'name': tasks_from, 'hosts': 'localhost', 'gather_facts': False, 'vars': variables, 'tasks': [
                {'name': tasks_from, 'ansible.builtin.include_role': {'name': 'samepage.ksm.ksm',
                                                                      'tasks_from': tasks_from}}]}], handle)
        return run_playbook(path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def task_results(run, task):
    """Results of a task of the role (the callback names them "samepage.ksm.ksm : <task>")."""
    return [result for result in run.results if result['task'].endswith(task)]


def verify(variables):
    """(status, message) of the verify task."""
    run = role('verify', variables)
    found = task_results(run, VERIFY_TASK)
    assert len(found) == 1, run.output[-4000:]
    return found[0]['status'], found[0]['result'].get('msg', '')


def test_run_0_passes_and_without_systemd_the_service_check_fails_clearly(ksm_host):
    ksm_host.set(run=0)
    ksm_host.unmerge()
    status, message = verify(NO_SERVICES)
    assert status == 'ok', message
    assert message.startswith('localhost shares no memory through KSM and nothing found switches it on again')
    assert 'the ksm and ksmtuned services were not checked (ksm_verify_services is false)' in message

    status, message = verify({})
    assert status == 'failed', message
    assert ('whether the ksm and ksmtuned services are stopped and disabled cannot be checked: systemd is not running '
            'on this host (PID 1 is not systemd') in message, message
    assert 'set ksm_verify_services: false to leave this check out knowingly' in message, message
    assert message.startswith('localhost must not share memory through KSM (ksm_enabled: false), but 1 thing')


def test_a_process_opted_in_with_prctl_is_named(ksm_host):
    ksm_host.set(run=0)
    with MergeableWorkload(mib=4, merge_any=True) as opted_in:
        with open('/proc/%d/ksm_stat' % opted_in.pid) as handle:
            if 'ksm_merge_any' not in handle.read():
                pytest.skip('this kernel does not say which processes opted in (ksm_merge_any, about Linux 6.14+)')
        status, message = verify(NO_SERVICES)
    assert status == 'failed', message
    assert 'pid %d (' % opted_in.pid in message and 'opted in to merging as a whole (prctl PR_SET_MEMORY_MERGE' \
        in message, message
    assert 'run is' not in message, message


def test_run_1_with_pages_shared_is_named(ksm_host):
    with MergeableWorkload(mib=8):
        ksm_host.set(run=1, pages_to_scan=5000, sleep_millisecs=0)
        state = wait_for_sharing(min_pages_sharing=16, timeout=180)
        status, message = verify(NO_SERVICES)
    assert status == 'failed', (message, state)
    assert '(1) run is 1: ksmd is merging pages' in message, message
    assert 'pages are shared by' in message and 'samepage.ksm.ksm_unmerge' in message, message


@pytest.fixture(scope='module')
def libvirtd():
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with PrivateLibvirtd() as daemon:
        daemon.define(tiny_domain(TRUSTED))
        daemon.define(tiny_domain(TENANT))
        yield daemon


def configured(daemon, name):
    return _libvirt.has_nosharepages(daemon.virsh('dumpxml', '--inactive', name).stdout)


def test_the_role_opts_guests_out_and_verify_names_the_one_left_sharing(libvirtd, ksm_host):
    daemon = libvirtd
    ksm_host.set(run=0)
    ksm_host.unmerge()
    opt_out = {'ksm_nosharepages_domains': ['samepage-ten*'], 'ksm_libvirt_uri': daemon.uri}
    run = role('nosharepages', opt_out)
    done = task_results(run, OPT_OUT_TASK)
    assert run.rc == 0 and len(done) == 1 and done[0]['result']['changed'] is True, run.output[-4000:]
    assert done[0]['result']['changed_domains'] == [TENANT]
    assert configured(daemon, TENANT) and not configured(daemon, TRUSTED)
    again = role('nosharepages', opt_out)
    assert again.rc == 0 and task_results(again, OPT_OUT_TASK)[0]['result']['changed'] is False, again.output[-4000:]

    checks = dict(NO_SERVICES, ksm_verify_nosharepages=True, ksm_libvirt_uri=daemon.uri)
    status, message = verify(checks)
    assert status == 'failed', message
    assert 'the definitions of %s lack nosharepages' % TRUSTED in message and TENANT + ' ' not in message, message
    assert 'ksm_nosharepages_domains' in message, message

    everyone = role('nosharepages', dict(opt_out, ksm_nosharepages_domains=['samepage-*']))
    assert everyone.rc == 0, everyone.output[-4000:]
    status, message = verify(checks)
    assert status == 'ok', message

    # libvirt that does not answer: the check fails, naming it
    status, message = verify(dict(checks, ksm_libvirt_uri=daemon.uri + '.down'))
    assert status == 'failed' and 'whether every libvirt domain carries nosharepages cannot be checked' in message
    assert 'Cannot connect to libvirt' in message, message


def test_the_role_fails_naming_the_variable_when_guests_cannot_be_opted_out(libvirtd):
    daemon = libvirtd
    before = {name: daemon.virsh('dumpxml', '--inactive', name).stdout for name in (TRUSTED, TENANT)}
    for variables, words in (
            ({'ksm_nosharepages_domains': ['prod-*'], 'ksm_libvirt_uri': daemon.uri}, "no domain matches 'prod-*'"),
            ({'ksm_nosharepages_domains': [TENANT], 'ksm_libvirt_uri': daemon.uri + '.down'},
             'Cannot connect to libvirt')):
        run = role('nosharepages', variables)
        failed = task_results(run, REPORT_TASK)
        assert run.rc != 0 and len(failed) == 1, run.output[-4000:]
        message = failed[0]['result']['msg']
        assert message.startswith('ksm_nosharepages_domains is %s for localhost, but the guests could not be opted out'
                                  % json.dumps(variables['ksm_nosharepages_domains'])), message
        assert words in message and 'set ksm_nosharepages_domains only for hosts with such libvirt guests' in message
    assert {name: daemon.virsh('dumpxml', '--inactive', name).stdout for name in (TRUSTED, TENANT)} == before
