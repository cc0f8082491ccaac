# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ksm_sysfs on this machine's real /sys/kernel/mm/ksm, through real `ansible` and `ansible-playbook` runs.

Every test holds the host lock (ksm_host fixture), which puts every knob back afterwards and leaves
nothing shared. Persistence tests write the real /etc/systemd/system/samepage-ksm-sysfs.service and its
symlink, and put back whatever was there before (normally: nothing). Where the real KSM cannot be used
(no KSM, not root, read-only /sys) the fixture skips the test and says why.
"""

import os
import shutil
import subprocess
import time

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_boot
from ansible_collections.samepage.ksm.tests.support.ansible_cli import run_module, run_playbook
from ansible_collections.samepage.ksm.tests.support.four_steps import four_steps as shared_four_steps
from ansible_collections.samepage.ksm.tests.support.ksm_host import writable_knobs
from ansible_collections.samepage.ksm.tests.support.merge_workload import MergeableWorkload

MODULE = 'samepage.ksm.ksm_sysfs'
WORKLOAD_MIB = 32
MIN_SHARING = 1000        # of the 8192 pages of the workload
ADVISOR = 'advisor_mode'


def sysfs(args=None, check=False, diff=False, **kwargs):
    return run_module(MODULE, args, check=check, diff=diff, **kwargs)


def settings(host):
    return writable_knobs(host.state())


def other(current, *candidates):
    """The first candidate that differs from the current value."""
    return [value for value in candidates if value != current][0]


def four_steps(host, args, diff=False):
    """check (changed, nothing written), apply (changed), apply (unchanged), check (unchanged)."""
    before = settings(host)
    checked, applied, again, dummy = shared_four_steps(
        lambda check: sysfs(args, check=check, diff=diff), observe=lambda: settings(host),
        describe=lambda result: result.output)
    assert applied['before'] == before
    assert applied['after'] == settings(host) == checked['after']
    assert applied['writes'] == checked['writes']
    assert again['writes'] == [] and again['before'] == again['after'] == applied['after']
    return checked, applied


@pytest.fixture
def host(ksm_host):
    """The real host with the advisor off (pages_to_scan settable), as the machine starts."""
    if ksm_host.state().get(ADVISOR, 'none') != 'none':
        ksm_host.set(advisor_mode='none')
    return ksm_host


def needs(host, *names):
    missing = [name for name in names if name not in host.state()]
    if missing:
        pytest.skip('this kernel (%s) has no %s' % (_ksm.kernel_release(), ', '.join(missing)))


# ---------------------------------------------------------------------------------------------------
# Each kind of change, four steps, then the real state

def test_int_knob(host):
    value = other(host.state()['pages_to_scan'], 1234, 1235)
    checked, applied = four_steps(host, {'pages_to_scan': value}, diff=True)
    assert host.state()['pages_to_scan'] == value
    assert applied['writes'] == [{'knob': 'pages_to_scan', 'value': value}]
    knobs = applied['diff'][0]
    assert knobs['before']['pages_to_scan'] != value and knobs['after']['pages_to_scan'] == value
    assert checked['msg'] == 'Would set pages_to_scan=%d' % value


def test_bool_knob(host):
    current = host.state()['use_zero_pages']
    four_steps(host, {'use_zero_pages': not current})
    assert host.state()['use_zero_pages'] is (not current)
    if 'smart_scan' in host.state():
        smart = host.state()['smart_scan']
        four_steps(host, {'smart_scan': not smart})
        assert host.state()['smart_scan'] is (not smart)


def test_run(host):
    running = host.state()['run'] == 1
    checked, applied = four_steps(host, {'run': not running})
    assert host.state()['run'] == (0 if running else 1)
    assert applied['writes'] == [{'knob': 'run', 'value': 0 if running else 1}]
    four_steps(host, {'run': running})
    assert host.state()['run'] == (1 if running else 0)


def test_run_false_is_satisfied_by_run_2(host):
    host.unmerge()                                  # run=2: stopped, nothing merged
    result = sysfs({'run': False})
    assert result['failed'] is False and result['changed'] is False
    assert host.state()['run'] == 2


def test_advisor_mode_and_the_pages_to_scan_reset(host):
    needs(host, ADVISOR, 'advisor_min_pages_to_scan')
    minimum = other(host.state()['advisor_min_pages_to_scan'], 700, 701)
    host.set(pages_to_scan=other(host.state()['pages_to_scan'], 2000, 2001))
    checked, applied = four_steps(host, {ADVISOR: 'scan-time', 'advisor_min_pages_to_scan': minimum})
    state = host.state()
    assert state[ADVISOR] == 'scan-time'
    # entering scan-time copies advisor_min_pages_to_scan into pages_to_scan; the check run predicted it
    assert checked['after']['pages_to_scan'] == minimum == applied['after']['pages_to_scan']

    refused = sysfs({'pages_to_scan': 3000})
    assert refused['failed'] is True and 'pages_to_scan' in refused['msg'] and 'scan-time' in refused['msg']
    assert host.state()[ADVISOR] == 'scan-time'

    checked, applied = four_steps(host, {ADVISOR: 'none'})
    assert host.state()['pages_to_scan'] == _ksm.PAGES_TO_SCAN_AFTER_ADVISOR_OFF == checked['after']['pages_to_scan']

    host.set(advisor_mode='scan-time')
    checked, applied = four_steps(host, {ADVISOR: 'none', 'pages_to_scan': 3000})
    assert [item['knob'] for item in applied['writes']] == [ADVISOR, 'pages_to_scan']
    assert host.state()['pages_to_scan'] == 3000 and host.state()[ADVISOR] == 'none'


def test_merge_across_nodes_policies(host):
    needs(host, 'merge_across_nodes')
    if host.state()['pages_shared']:
        host.unmerge()
    nodes = _ksm.numa_nodes_with_memory()
    auto = 0 if len(nodes) > 1 else 1
    host.set(merge_across_nodes=1 - auto)
    checked, applied = four_steps(host, {'merge_across_nodes': 'auto'})
    assert applied['numa_nodes'] == nodes
    assert host.state()['merge_across_nodes'] == auto
    for policy, value in (('never', 0), ('always', 1)):
        if host.state()['merge_across_nodes'] == value:
            continue
        four_steps(host, {'merge_across_nodes': policy})
        assert host.state()['merge_across_nodes'] == value
    for policy, value in (('always', 1), ('never', 0), ('auto', auto)):
        result = sysfs({'merge_across_nodes': policy}, check=True)
        assert result['failed'] is False
        assert result['changed'] is (host.state()['merge_across_nodes'] != value)


@pytest.mark.every_controller
def test_several_knobs_at_once(host):
    state = host.state()
    args = {
        'run': state['run'] != 1,
        'pages_to_scan': other(state['pages_to_scan'], 800, 801),
        'sleep_millisecs': other(state['sleep_millisecs'], 33, 34),
        'use_zero_pages': not state['use_zero_pages'],
    }
    if 'max_page_sharing' in state and not state['pages_shared']:
        args['max_page_sharing'] = other(state['max_page_sharing'], 300, 301)
    if 'stable_node_chains_prune_millisecs' in state:
        args['stable_node_chains_prune_millisecs'] = other(state['stable_node_chains_prune_millisecs'], 3000, 3001)
    checked, applied = four_steps(host, args)
    names = [item['knob'] for item in applied['writes']]
    assert names == [name for name in _ksm.WRITE_ORDER if name in args] and names[-1] == 'run'
    state = host.state()
    for name, value in args.items():
        assert state[name] == (int(value) if name == 'run' else value), name


@pytest.mark.every_controller
def test_ad_hoc_key_value_arguments(host):
    value = other(host.state()['sleep_millisecs'], 41, 42)
    result = run_module(MODULE, extra_args=['-a', 'sleep_millisecs=%d run=false' % value])
    assert result['failed'] is False, result.output
    assert host.state()['sleep_millisecs'] == value


# ---------------------------------------------------------------------------------------------------
# Bad input: failed, the knob named, the kernel unchanged

@pytest.mark.every_controller
@pytest.mark.parametrize('args, knob', [
    ({'pages_to_scan': -1}, 'pages_to_scan'),
    ({'pages_to_scan': 4294967296}, 'pages_to_scan'),
    ({'sleep_millisecs': 'soon'}, 'sleep_millisecs'),
    ({'max_page_sharing': 1}, 'max_page_sharing'),
    ({'max_page_sharing': 2147483648}, 'max_page_sharing'),
    ({'advisor_target_scan_time': 0}, 'advisor_target_scan_time'),
    ({'advisor_max_cpu': 4294967296}, 'advisor_max_cpu'),
    ({'run': 'sometimes'}, 'run'),
    ({'use_zero_pages': 2}, 'use_zero_pages'),
    ({'advisor_mode': 'SCAN-TIME'}, 'advisor_mode'),
    ({'merge_across_nodes': 'yes'}, 'merge_across_nodes'),
    ({'merge_across_nodes': 0}, 'merge_across_nodes'),
    ({'memory_margin': '101%'}, 'memory_margin'),
    ({'persist_mode': 'append', 'persist': True}, 'persist_mode'),
    ({'no_such_knob': 1}, 'no_such_knob'),
])
def test_bad_input(host, args, knob):
    before = settings(host)
    unit_existed = os.path.lexists(_ksm_boot.BootConfig().unit_path)
    args = dict(args)
    if knob != 'sleep_millisecs':
        args['sleep_millisecs'] = other(before['sleep_millisecs'], 55, 56)   # a valid change that must not happen
    for check in (True, False):
        result = sysfs(args, check=check)
        assert result['failed'] is True, result
        assert knob in result['msg'], result['msg']
        assert settings(host) == before
    assert os.path.lexists(_ksm_boot.BootConfig().unit_path) == unit_existed


def test_pages_to_scan_under_the_advisor(host):
    needs(host, ADVISOR)
    host.set(advisor_mode='scan-time')
    before = settings(host)
    result = sysfs({'pages_to_scan': 1000, 'sleep_millisecs': other(before['sleep_millisecs'], 57, 58)})
    assert result['failed'] is True
    assert 'pages_to_scan' in result['msg'] and 'advisor_mode=none' in result['msg']
    assert settings(host) == before


# ---------------------------------------------------------------------------------------------------
# Real shared pages: the EBUSY rule and the opt-in unmerge

@pytest.fixture
def merged(host):
    """A workload's pages merged, then ksmd stopped (run=0) so nothing merges again behind the test."""
    needs(host, 'merge_across_nodes', 'max_page_sharing')
    host.set(run=1, pages_to_scan=5000, sleep_millisecs=10)
    with MergeableWorkload(mib=WORKLOAD_MIB) as workload:
        workload.wait_for_sharing(MIN_SHARING, timeout=180)
        host.set(run=0)
        state = host.state()
        assert state['pages_shared'] > 0 and state['pages_sharing'] >= MIN_SHARING
        yield host, workload


def test_ebusy_refusal_changes_nothing(merged):
    host, workload = merged
    before = settings(host)
    sharing = host.state()['pages_sharing']
    args = {'merge_across_nodes': 'never' if before['merge_across_nodes'] else 'always',
            'max_page_sharing': other(before['max_page_sharing'], 128, 129),
            'pages_to_scan': other(before['pages_to_scan'], 4000, 4001)}
    for check in (True, False):
        result = sysfs(args, check=check)
        assert result['failed'] is True
        msg = result['msg']
        assert 'EBUSY' in msg and 'pages_shared=' in msg and 'Nothing was changed' in msg
        assert 'samepage.ksm.ksm_unmerge' in msg and 'unmerge_if_busy=true' in msg
        assert 'merge_across_nodes (' in msg and 'max_page_sharing (' in msg
        assert settings(host) == before
        assert host.state()['pages_sharing'] == sharing
    assert workload.merging_pages() > 0


def test_opt_in_unmerge_four_steps(merged):
    host, workload = merged
    before = settings(host)
    assert before['run'] == 0
    target = 0 if before['merge_across_nodes'] else 1
    args = {'merge_across_nodes': 'never' if target == 0 else 'always', 'unmerge_if_busy': True}
    checked, applied = four_steps(host, args)
    expected = [{'knob': 'run', 'value': 2}, {'knob': 'merge_across_nodes', 'value': target},
                {'knob': 'run', 'value': 0}]
    assert checked['writes'] == expected == applied['writes']
    assert checked['unmerged']['pages'] >= MIN_SHARING and checked['unmerged']['duration'] is None
    assert applied['unmerged']['pages'] >= MIN_SHARING
    assert applied['unmerged']['bytes'] == applied['unmerged']['pages'] * _ksm.page_size()
    assert applied['unmerged']['duration'] >= 0
    assert 'unmerged' in applied['msg']
    state = host.state()
    assert state['pages_shared'] == 0 and state['pages_sharing'] == 0
    assert state['merge_across_nodes'] == target
    assert state['run'] == 0                                   # put back exactly, not left at 2
    assert workload.merging_pages() == 0


def test_opt_in_unmerge_with_ksmd_running_puts_run_back(merged):
    host, workload = merged
    host.set(run=1)
    value = other(host.state()['max_page_sharing'], 512, 513)
    result = sysfs({'max_page_sharing': value, 'unmerge_if_busy': True})
    assert result['failed'] is False, result.output
    assert [(item['knob'], item['value']) for item in result['writes']] == [
        ('run', 2), ('max_page_sharing', value), ('run', 1)]
    assert result['unmerged']['pages'] >= MIN_SHARING
    state = host.state()
    assert state['max_page_sharing'] == value and state['run'] == 1


def test_opt_in_refused_when_memory_does_not_allow_it(merged):
    host, workload = merged
    before = settings(host)
    sharing = host.state()['pages_sharing']
    args = {'max_page_sharing': other(before['max_page_sharing'], 64, 65), 'unmerge_if_busy': True,
            'memory_margin': '100%'}
    for check in (True, False):
        result = sysfs(args, check=check)
        assert result['failed'] is True
        assert 'Refusing to unmerge' in result['msg'] and 'unmerge_if_busy=true' in result['msg']
        assert result['needed_bytes'] >= MIN_SHARING * _ksm.page_size()
        assert result['budget_bytes'] < result['needed_bytes']
        assert settings(host) == before and host.state()['pages_sharing'] == sharing


# ---------------------------------------------------------------------------------------------------
# A competing manager, for real: a process whose command name is ksmtuned

@pytest.fixture
def fake_ksmtuned(tmp_path):
    program = tmp_path / 'ksmtuned'
    shutil.copy('/bin/sleep', str(program))
    process = subprocess.Popen([str(program), '600'])
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with open('/proc/%d/comm' % process.pid) as handle:
                    if handle.read().strip() == 'ksmtuned':
                        break
            except OSError:
                pass
            time.sleep(0.05)
        yield process
    finally:
        process.kill()
        process.wait()


def test_ksmtuned_warning(host, fake_ksmtuned):
    value = other(host.state()['sleep_millisecs'], 61, 62)
    result = sysfs({'sleep_millisecs': value, 'use_zero_pages': host.state()['use_zero_pages']})
    assert result['failed'] is False
    assert result['competing_managers'] == {'ksmtuned': ['sleep_millisecs']}
    warnings = [item for item in result.get('warnings', []) if 'ksmtuned' in item]
    assert len(warnings) == 1 and 'samepage.ksm.ksm_service' in warnings[0]
    quiet = sysfs({'use_zero_pages': host.state()['use_zero_pages']})
    assert quiet['competing_managers'] == {} and not [w for w in quiet.get('warnings', []) if 'ksmtuned' in w]


# ---------------------------------------------------------------------------------------------------
# Persistence on this machine's /etc/systemd/system

@pytest.fixture
def boot(host):
    """The real unit and symlink paths; whatever was there is put back afterwards (normally nothing)."""
    config = _ksm_boot.BootConfig()
    saved_unit = config.read_text()
    saved_link = os.readlink(config.link_path) if os.path.islink(config.link_path) else None
    wants_existed = os.path.isdir(config.wants_dir)
    try:
        yield config
    finally:
        if os.path.lexists(config.link_path):
            os.unlink(config.link_path)
        if os.path.lexists(config.unit_path):
            os.unlink(config.unit_path)
        if saved_unit is not None:
            with open(config.unit_path, 'w') as handle:
                handle.write(saved_unit)
        if saved_link is not None:
            os.symlink(saved_link, config.link_path)
        if not wants_existed and os.path.isdir(config.wants_dir) and not os.listdir(config.wants_dir):
            os.rmdir(config.wants_dir)


@pytest.mark.every_controller
def test_persist_writes_the_unit_and_enables_it(host, boot):
    if boot.read_text() is not None:
        sysfs({'persist': True, 'persist_mode': 'replace'})
    state = host.state()
    pages = other(state['pages_to_scan'], 1500, 1501)
    args = {'pages_to_scan': pages, 'run': False, 'persist': True}
    if 'merge_across_nodes' in state:
        args['merge_across_nodes'] = 'auto'
    checked = sysfs(args, check=True, diff=True)
    assert checked['changed'] is True and not os.path.lexists(boot.unit_path) and not os.path.lexists(boot.link_path)
    assert checked['diff'][1]['before'] == '' and '# Managed by samepage.ksm.ksm_sysfs' in checked['diff'][1]['after']

    applied = sysfs(args, diff=True)
    assert applied['failed'] is False and applied['changed'] is True
    expected = {'pages_to_scan': pages, 'run': 0}
    if 'merge_across_nodes' in state:
        expected['merge_across_nodes'] = 0 if len(_ksm.numa_nodes_with_memory()) > 1 else 1
    assert applied['persisted'] == expected == checked['persisted']
    assert applied['boot_unit'] == boot.unit_path == '/etc/systemd/system/samepage-ksm-sysfs.service'
    with open(boot.unit_path) as handle:
        text = handle.read()
    assert text == _ksm_boot.render(expected) == applied['diff'][1]['after']
    assert "ExecStart=/bin/sh -c 'echo %d > /sys/kernel/mm/ksm/pages_to_scan'" % pages in text.splitlines()
    assert os.readlink(boot.link_path) == boot.unit_path
    assert boot.link_path == '/etc/systemd/system/sysinit.target.wants/samepage-ksm-sysfs.service'
    assert oct(os.stat(boot.unit_path).st_mode & 0o777) == '0o644'
    assert host.state()['pages_to_scan'] == pages

    again = sysfs(args)
    assert again['changed'] is False
    assert sysfs(args, check=True)['changed'] is False
    with open(boot.unit_path) as handle:
        assert handle.read() == text
    leftovers = [name for name in os.listdir(boot.unit_dir) if name.startswith('.' + _ksm_boot.UNIT_NAME)]
    assert leftovers == []


def test_persist_drift_both_ways(host, boot):
    pages = other(host.state()['pages_to_scan'], 1600, 1601)
    args = {'pages_to_scan': pages, 'persist': True, 'persist_mode': 'replace'}
    assert sysfs(args)['changed'] is True

    # the file differs, the live value matches: changed, the file is fixed, nothing written to /sys
    with open(boot.unit_path) as handle:
        text = handle.read()
    with open(boot.unit_path, 'w') as handle:
        handle.write(text.replace('echo %d ' % pages, 'echo 99 '))
    checked = sysfs(args, check=True, diff=True)
    assert checked['changed'] is True and checked['writes'] == []
    assert 'echo 99 ' in checked['diff'][1]['before']
    fixed = sysfs(args)
    assert fixed['changed'] is True and fixed['writes'] == []
    with open(boot.unit_path) as handle:
        assert handle.read() == text

    # the live value differs, the file matches: changed, the live value is written, the file untouched
    host.set(pages_to_scan=other(pages, 77, 78))
    mtime = os.stat(boot.unit_path).st_mtime_ns
    fixed = sysfs(args)
    assert fixed['changed'] is True and fixed['writes'] == [{'knob': 'pages_to_scan', 'value': pages}]
    assert host.state()['pages_to_scan'] == pages and os.stat(boot.unit_path).st_mtime_ns == mtime

    # the symlink is gone: changed, enabled again
    os.unlink(boot.link_path)
    assert sysfs(args)['changed'] is True and os.readlink(boot.link_path) == boot.unit_path
    assert sysfs(args)['changed'] is False


def test_persist_merge_then_replace_with_nothing_removes_it(host, boot):
    state = host.state()
    pages = other(state['pages_to_scan'], 1700, 1701)
    sleep = other(state['sleep_millisecs'], 44, 45)
    sysfs({'pages_to_scan': pages, 'persist': True, 'persist_mode': 'replace'})
    merged = sysfs({'sleep_millisecs': sleep, 'persist': True})
    assert merged['persisted'] == {'pages_to_scan': pages, 'sleep_millisecs': sleep}
    assert _ksm_boot.parse(open(boot.unit_path).read()) == merged['persisted']

    live_only = sysfs({'sleep_millisecs': other(sleep, 46, 47)})
    assert live_only['persisted'] == merged['persisted']
    assert any('boot configuration' in item for item in live_only.get('warnings', []))

    checked = sysfs({'persist': True, 'persist_mode': 'replace'}, check=True)
    assert checked['changed'] is True and os.path.exists(boot.unit_path)
    removed = sysfs({'persist': True, 'persist_mode': 'replace'})
    assert removed['changed'] is True and removed['persisted'] == {}
    assert not os.path.lexists(boot.unit_path) and not os.path.lexists(boot.link_path)
    assert sysfs({'persist': True, 'persist_mode': 'replace'})['changed'] is False
    assert sysfs({'persist': True, 'persist_mode': 'replace'}, check=True)['changed'] is False


# ---------------------------------------------------------------------------------------------------
# A playbook

PLAYBOOK = '''
- name: ksm_sysfs in a play
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Predict
      samepage.ksm.ksm_sysfs:
        pages_to_scan: "{{ pages }}"
        sleep_millisecs: "{{ sleep }}"
      check_mode: true
      register: predicted
    - name: Apply
      samepage.ksm.ksm_sysfs:
        pages_to_scan: "{{ pages }}"
        sleep_millisecs: "{{ sleep }}"
      register: applied
    - name: Apply again
      samepage.ksm.ksm_sysfs:
        pages_to_scan: "{{ pages }}"
        sleep_millisecs: "{{ sleep }}"
      register: again
    - name: Check what was returned
      ansible.builtin.assert:
        that:
          - (predicted is changed) == (first | bool)
          - (applied is changed) == (first | bool)
          - again is not changed
          - applied.after.pages_to_scan == pages | int
          - applied.writes | map(attribute='knob') | list == (['pages_to_scan', 'sleep_millisecs'] if first | bool else [])
    - name: A YAML boolean is not a NUMA policy
      samepage.ksm.ksm_sysfs:
        merge_across_nodes: no
      register: yaml_boolean
      ignore_errors: true
    - name: It failed, naming the option
      ansible.builtin.assert:
        that:
          - yaml_boolean is failed
          - "'merge_across_nodes' in yaml_boolean.msg"
'''


@pytest.mark.every_controller
def test_playbook(host, tmp_path):
    state = host.state()
    pages = other(state['pages_to_scan'], 1900, 1901)
    sleep = other(state['sleep_millisecs'], 48, 49)
    playbook = tmp_path / 'play.yml'
    playbook.write_text(PLAYBOOK)
    run = run_playbook(str(playbook), extra_vars={'pages': pages, 'sleep': sleep, 'first': True}, diff=True)
    assert run.rc == 0, run.output
    assert run.stats['localhost']['changed'] == 2 and run.stats['localhost']['failed'] == 0
    assert run.stats['localhost']['ignored'] == 1
    assert host.state()['pages_to_scan'] == pages and host.state()['sleep_millisecs'] == sleep
    assert run.results_for('Apply')[0]['result']['diff'][0]['after']['pages_to_scan'] == pages

    checked = run_playbook(str(playbook), extra_vars={'pages': pages, 'sleep': sleep, 'first': False}, check=True)
    assert checked.rc == 0, checked.output
    assert checked.stats['localhost']['changed'] == 0
