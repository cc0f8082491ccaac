# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The `validate` entry points of both roles (roles/ksm/tasks/input_rules.yml), table-driven.

One ansible-playbook run checks every case: each case is a host of its own (a local connection that
nothing runs on: the validate entry points are asserts and the argument spec, done by the controller),
carrying the case's variables as host variables. Each bad case must fail at exactly one task, with a
message that names the variable; each good case must pass both entry points.
"""

import os
import shutil
import sys
import tempfile

import pytest
import yaml

from ansible_collections.samepage.ksm.tests.support.ansible_cli import run_playbook

PLAYBOOK = [{
    'name': 'validate both roles, as site.yml does first',
    'hosts': 'all',
    'gather_facts': False,
    'tasks': [
        {'name': 'validate ksm', 'ansible.builtin.include_role': {'name': 'samepage.ksm.ksm', 'tasks_from': 'validate'}},
        {'name': 'validate ksmtuned',
         'ansible.builtin.include_role': {'name': 'samepage.ksm.ksmtuned', 'tasks_from': 'validate'}},
    ],
}]

GOOD = {
    'defaults': {},
    'fixed-rate': {'ksm_tuner': 'none', 'ksm_settings': {'pages_to_scan': 1000, 'sleep_millisecs': 50}},
    'secure': {'ksm_enabled': False, 'ksm_memory_margin': '10%'},
    'margin-size': {'ksm_memory_margin': '512M'},
    'logfile': {'ksmtuned_logfile': '/var/log/ksmtuned.log', 'ksmtuned_debug': True},
    'decay-zero': {'ksmtuned_npages_decay': 0},
    'integer-as-text': {'ksmtuned_monitor_interval': '30'},
    'samepage-defaults': {'ksm_tuner': 'samepage'},
    'samepage-settings': {'ksm_tuner': 'samepage', 'ksm_settings': {'max_page_sharing': 512, 'use_zero_pages': True},
                          'ksm_tuner_settings': {'cpu_budget': 40, 'pressure_gate': 0, 'log_level': 'debug',
                                                 'process_poll_seconds': 0.5, 'idle_sleep_millisecs': None}},
    'samepage-setting-as-text': {'ksm_tuner': 'samepage', 'ksm_tuner_settings': {'budget_window': '120'}},
    'samepage-off': {'ksm_enabled': False, 'ksm_tuner': 'samepage'},
    'mixed-trust': {'ksm_tuner': 'samepage', 'ksm_nosharepages_domains': ['tenant-*', 'billing-db', 'vm[0-9][!x]'],
                    'ksm_nosharepages_restart': True},
    'secure-defence-in-depth': {'ksm_enabled': False, 'ksm_nosharepages_domains': ['*'], 'ksm_verify_nosharepages': True,
                                'ksm_libvirt_uri': 'qemu+ssh://root@kvm-01/system'},
    'secure-without-systemd': {'ksm_enabled': False, 'ksm_verify_services': False},
    'neutralise-writers': {'ksm_tuner': 'none', 'ksm_neutralise_writers': ['qemu-kvm.service', 'tuned', 'ksmtuned']},
    'neutralise-with-ksmtuned-off': {'ksm_enabled': False, 'ksm_neutralise_writers': ['ksmtuned']},
    'packages': {'ksm_packages': ['ksmtuned', 'qemu-kvm-common=8.2.0-1', 'ksm:amd64']},
    'metrics': {'ksm_metrics_enabled': True, 'ksm_metrics_directory': '/var/lib/node_exporter/textfile_collector',
                'ksm_metrics_interval': 15},
    'metrics-interval-as-text': {'ksm_metrics_enabled': True, 'ksm_metrics_interval': '30'},
}

# case: (variables, text the one failure must contain)
BAD = {
    'decay-positive': ({'ksmtuned_npages_decay': 5}, 'ksmtuned_npages_decay=5 is out of range for KSM_NPAGES_DECAY: '
                       'expected an integer from -4294967295 to 0 (ksmtuned adds it'),
    'interval-zero': ({'ksmtuned_monitor_interval': 0}, 'ksmtuned_monitor_interval=0 is out of range for KSM_MONITOR_INTERVAL'),
    'coef-above-100': ({'ksmtuned_thres_coef': 101}, 'ksmtuned_thres_coef=101 is out of range for KSM_THRES_COEF'),
    # int() takes these, so the argument spec lets them through; bash must not see them.
    'interval-newline': ({'ksmtuned_monitor_interval': '60\n'}, 'ksmtuned_monitor_interval="60\\n" is not valid for '
                         'KSM_MONITOR_INTERVAL: expected an integer'),
    'min-above-max': ({'ksmtuned_npages_min': 2000, 'ksmtuned_npages_max': 1000},
                      'ksmtuned_npages_min=2000 is greater than ksmtuned_npages_max=1000'),
    'logfile-metachar': ({'ksmtuned_logfile': '/var/log/ksmtuned;reboot'}, 'ksmtuned_logfile="/var/log/ksmtuned;reboot" '
                         'is not valid for LOGFILE'),
    'logfile-relative': ({'ksmtuned_logfile': 'var/log/ksmtuned'}, 'is not valid for LOGFILE'),
    'logfile-dotdot': ({'ksmtuned_logfile': '/var/log/../../etc/shadow'}, 'is not valid for LOGFILE'),
    # Python's $ matches before a final newline: the pattern must end in \Z.
    'logfile-newline': ({'ksmtuned_logfile': '/var/log/ksmtuned\n'}, 'ksmtuned_logfile="/var/log/ksmtuned\\n" is not valid '
                        'for LOGFILE'),
    'ksmtuned-without-ksm': ({'ksm_enabled': False, 'ksmtuned_enabled': True},
                             'ksmtuned_enabled is true but ksm_enabled is false'),
    'ksmtuned-with-fixed-rate': ({'ksm_tuner': 'none', 'ksmtuned_enabled': True},
                                 'ksmtuned_enabled is true but ksm_tuner is none'),
    'pages-with-ksmtuned': ({'ksm_settings': {'pages_to_scan': 5000}},
                            'ksm_settings.pages_to_scan is set, but ksm_tuner is ksmtuned'),
    'sleep-with-ksmtuned': ({'ksm_settings': {'sleep_millisecs': 50}},
                            'ksm_settings.sleep_millisecs is set, but ksm_tuner is ksmtuned'),
    'advisor-with-ksmtuned': ({'ksm_settings': {'advisor_mode': 'scan-time'}},
                              'ksm_settings.advisor_mode is scan-time, but ksm_tuner is ksmtuned'),
    'advisor-and-pages': ({'ksm_tuner': 'none', 'ksm_settings': {'advisor_mode': 'scan-time', 'pages_to_scan': 100}},
                          'ksm_settings.pages_to_scan cannot be set together with advisor_mode: scan-time'),
    'metrics-interval-too-short': ({'ksm_metrics_enabled': True, 'ksm_metrics_interval': 1},
                                   'ksm_metrics_directory or ksm_metrics_interval is not valid: Invalid interval 1: '
                                   'expected whole seconds from 5 to 86400'),
    'metrics-directory-relative': ({'ksm_metrics_directory': 'textfiles'},
                                   "ksm_metrics_directory or ksm_metrics_interval is not valid: Invalid directory "
                                   "'textfiles': expected an absolute path"),
    'margin-words': ({'ksm_memory_margin': '5 percent'}, 'ksm_memory_margin "5 percent" is not valid: expected a '
                     'percentage of total memory such as "5%" or a size such as "512M" or "2G".'),
    'margin-above-100': ({'ksm_memory_margin': '150%'}, 'ksm_memory_margin "150%" is not valid: a percentage cannot '
                         'exceed 100%.'),
    'ksmtuned-with-samepage': ({'ksm_tuner': 'samepage', 'ksmtuned_enabled': True},
                               'ksmtuned_enabled is true but ksm_tuner is samepage: the samepage tuner owns run'),
    'pages-with-samepage': ({'ksm_tuner': 'samepage', 'ksm_settings': {'pages_to_scan': 5000}},
                            'ksm_settings.pages_to_scan is set, but ksm_tuner is samepage: the samepage tuner sets '
                            'pages_to_scan itself'),
    'sleep-with-samepage': ({'ksm_tuner': 'samepage', 'ksm_settings': {'sleep_millisecs': 50}},
                            'ksm_settings.sleep_millisecs is set, but ksm_tuner is samepage'),
    'advisor-with-samepage': ({'ksm_tuner': 'samepage', 'ksm_settings': {'advisor_mode': 'scan-time'}},
                              'ksm_settings.advisor_mode is scan-time, but ksm_tuner is samepage'),
    # the tuner's own rules (_ksm_tuner.validate through the tuner_config_error filter)
    'tuner-budget-zero': ({'ksm_tuner': 'samepage', 'ksm_tuner_settings': {'cpu_budget': 0}},
                          'ksm_tuner_settings is not valid: Invalid value 0 for cpu_budget: expected a number from '
                          '0.1 to 100'),
    'tuner-window-text': ({'ksm_tuner': 'samepage', 'ksm_tuner_settings': {'budget_window': '60\n'}},
                          'Invalid value'),
    'tuner-gate-range': ({'ksm_tuner': 'samepage', 'ksm_tuner_settings': {'pressure_gate': 100}},
                         'for pressure_gate: expected an integer from 1 to 99, or 0 (off)'),
    # checked whatever ksm_tuner is, so a host is never switched to a tuner with a bad setting
    'tuner-bad-while-ksmtuned': ({'ksm_tuner_settings': {'idle_sleep_millisecs': 0}},
                                 'for idle_sleep_millisecs: expected an integer from 1 to 60000'),
    # types: the argument spec, before the rules
    'tuner-unknown-key': ({'ksm_tuner': 'samepage', 'ksm_tuner_settings': {'cpu_budgett': 10}}, 'cpu_budgett'),
    'tuner-log-level': ({'ksm_tuner': 'samepage', 'ksm_tuner_settings': {'log_level': 'loud'}},
                        'value of log_level must be one of: debug, info, warning, error, got: loud found in '
                        'ksm_tuner_settings'),
    'run-not-a-setting': ({'ksm_settings': {'run': 1}}, 'ksm_settings.run'),
    # the per-guest opt-out: the rules of libvirt_nosharepages itself, before anything changes
    'domain-metachar': ({'ksm_nosharepages_domains': ['tenant-a;reboot']},
                        "Invalid domain name or pattern in ksm_nosharepages_domains: 'tenant-a;reboot' contains ';'"),
    'domain-blank-and-empty': ({'ksm_nosharepages_domains': ['web 01', '']},
                               "'web 01' contains ' '; '' is empty"),
    'domain-bang-outside-brackets': ({'ksm_nosharepages_domains': ['!tenant']}, "contains '!' outside a bracket"),
    'domains-not-a-list': ({'ksm_nosharepages_domains': {'tenant': 1}}, 'ksm_nosharepages_domains'),
    'restart-without-domains': ({'ksm_nosharepages_restart': True},
                                'ksm_nosharepages_restart is true but ksm_nosharepages_domains is empty'),
    'verify-services-not-bool': ({'ksm_verify_services': 'sometimes'}, 'ksm_verify_services'),
    'neutralise-the-chosen-tuner': ({'ksm_neutralise_writers': ['ksmtuned']},
                                    'ksm_neutralise_writers has ksmtuned, but ksm_tuner is ksmtuned'),
    'neutralise-unknown': ({'ksm_neutralise_writers': ['ovirt-mom']}, 'ksm_neutralise_writers'),
    # a name reaches apt's command line: one starting with - would be an option
    'package-option': ({'ksm_packages': ['-oAPT::Get::AllowUnauthenticated=true']}, 'ksm_packages has '
                       '"-oAPT::Get::AllowUnauthenticated=true", which is not a package name'),
    'package-newline': ({'ksm_packages': ['ksmtuned\n']}, 'ksm_packages has "ksmtuned\\n", which is not a package'),
}


@pytest.fixture(scope='module')
def validation():
    """The results of one run over every case: {case: [results of that host]} and the run itself."""
    directory = tempfile.mkdtemp(prefix='samepage-role-inputs-')
    try:
        hosts = {}
        for case, variables in list(GOOD.items()) + [(case, bad[0]) for case, bad in BAD.items()]:
            hostvars = dict(variables, ansible_connection='local', ansible_python_interpreter=sys.executable)
            hosts[case] = hostvars
        inventory = os.path.join(directory, 'hosts.yml')
        with open(inventory, 'w') as handle:
            yaml.safe_dump({'all': {'hosts': hosts}}, handle)
        playbook = os.path.join(directory, 'validate.yml')
        with open(playbook, 'w') as handle:
            yaml.safe_dump(PLAYBOOK, handle)
        run = run_playbook(playbook, inventory=inventory, extra_args=('--forks', '50'))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    by_host = {}
    for result in run.results:
        by_host.setdefault(result['host'], []).append(result)
    return by_host, run


def _text(result):
    data = result['result']
    return str(data.get('msg', '')) + ' ' + ' '.join(data.get('argument_errors', []))


@pytest.mark.parametrize('case', sorted(GOOD))
def test_good_inputs_pass_both_entry_points(validation, case):
    by_host, run = validation
    assert case in run.stats, run.output[-4000:]
    assert run.stats[case]['failed'] == 0 and run.stats[case]['changed'] == 0, (run.stats[case], run.output[-4000:])
    assert [r for r in by_host[case] if r['status'] == 'failed'] == []


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_inputs_fail_at_one_task_naming_the_variable(validation, case):
    by_host, run = validation
    _variables, expected = BAD[case]
    assert run.stats[case]['failed'] == 1 and run.stats[case]['changed'] == 0, run.stats[case]
    failed = [r for r in by_host[case] if r['status'] == 'failed']
    assert len(failed) == 1, failed
    assert expected in _text(failed[0]), _text(failed[0])
