# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Issue #11: every input of every role (roles/*/meta/argument_specs.yml, every entry point, sub-options
included), thrown hostile values (huge, negative, float, unicode digits, a trailing newline, a line break
inside, empty, wrong types), must fail the role's real validation at exactly one task with a message naming
the input, or be a documented normalisation (NORMALISED below, each with the reason it is harmless).

The `main` entry point of each role declares the same options as `validate` (one YAML anchor, checked
here) and starts with the same rules (tasks/validate.yml), so driving `validate` drives both. One
ansible-playbook run holds every case: each case is a host of its own (a local connection on which
nothing runs: the argument spec and the asserts are done by the controller), as in test_role_inputs.py.
"""

import os
import shutil
import sys
import tempfile

import pytest
import yaml

from ansible_collections.samepage.ksm.tests.support.ansible_cli import REPO, run_playbook

ROLES = ('ksm', 'ksmtuned')

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

HOSTILE = {
    'huge': 10 ** 30,
    'huge-text': '9' * 40,
    'negative': -1,
    'float': 1.5,
    'unicode-digits': '\uff11\uff12',      # fullwidth 12: Python's int() takes it
    'trailing-newline': '12\n',
    'line-break': 'a\nb',
    'empty': '',
    'dict': {'a': 1},
    'list': [1],
    'bool': True,
}


def role_options(role):
    """{input: option spec} of a role's entry points, sub-options as 'parent.key'. `main` and `validate` must
    declare the same options (validate checks what main will use); every other entry point (the ksm role's
    `verify`) a subset of them, each declared alike, so that the table of main covers it."""
    with open(os.path.join(REPO, 'roles', role, 'meta', 'argument_specs.yml')) as handle:
        specs = yaml.safe_load(handle)['argument_specs']
    main = specs['main'].get('options', {})
    assert specs['validate'].get('options', {}) == main, 'main and validate of %s declare different options' % role
    for entry, spec in specs.items():
        for name, option in (spec.get('options') or {}).items():
            assert main.get(name) == option, '%s of %s declares %s unlike main' % (entry, role, name)
    flat = {}
    for name, spec in main.items():
        flat[name] = spec
        for key, sub in (spec.get('options') or {}).items():
            flat['%s.%s' % (name, key)] = sub
    return flat


INPUTS = {}
for _role in ROLES:
    INPUTS.update(role_options(_role))

# What passes validation by design, per (input type, hostile value): Ansible's argument spec normalises it
# the documented way, and what the role does with it afterwards is bounded elsewhere (named in the reason).
NORMALISED_BY_TYPE = {
    ('bool', 'bool'): 'the right type',
    ('list', 'huge'): 'a list option makes a number the list of its text; a package that does not exist fails '
                      'the install naming it, before anything else changes',
    ('list', 'huge-text'): 'as huge',
    ('list', 'negative'): 'as huge (a list of "-1"); the package name rule allows no leading -, so it fails there',
    ('list', 'float'): 'as huge',
    ('list', 'unicode-digits'): 'as huge',
    ('list', 'list'): 'a list of its text',
    ('dict', 'empty'): 'Ansible reads an empty string as an empty dict: the defaults',
}
# Sub-options of ksm_settings: typed by the argument spec at validate time and checked against the kernel's
# rules (range, type) by samepage.ksm.ksm_sysfs before it writes anything, in main's knob probe, before the
# install (tests/unit/plugins/modules/test_hostile_inputs.py throws these values at ksm_sysfs).
DEFERRED_TO_KSM_SYSFS = 'checked by samepage.ksm.ksm_sysfs against the kernel (issue #11 module table)'


def documented(name, value_name):
    """The reason a passing case is fine, or None."""
    spec = INPUTS[name]
    kind = spec.get('type', 'str')
    reason = NORMALISED_BY_TYPE.get((kind, value_name))
    if reason:
        if kind == 'list' and value_name == 'negative' and 'choices' not in spec:
            return None          # ksm_packages: "-1" must fail the package name rule
        if kind == 'list' and 'choices' in spec:
            return None          # a choice list takes no number
        return reason
    if name.startswith('ksm_settings.') and kind == 'int' and value_name in (
            'huge', 'huge-text', 'negative', 'unicode-digits', 'trailing-newline'):
        return DEFERRED_TO_KSM_SYSFS
    if name.startswith('ksm_settings.') and kind == 'bool' and value_name == 'bool':
        return 'the right type'
    return None


CASES = {}
for _name in sorted(INPUTS):
    for _value_name, _value in HOSTILE.items():
        _parent, _dot, _key = _name.partition('.')
        CASES['%s=%s' % (_name, _value_name)] = ({_parent: {_key: _value}} if _dot else {_name: _value})


@pytest.fixture(scope='module')
def validation():
    directory = tempfile.mkdtemp(prefix='samepage-role-hostile-')
    try:
        hosts = {}
        for number, (case, variables) in enumerate(sorted(CASES.items())):
            # ksm_tuner_settings are checked whatever ksm_tuner is; ksmtuned_enabled needs ksm_tuner: ksmtuned
            hosts['case%04d' % number] = dict(variables, ansible_connection='local',
                                              ansible_python_interpreter=sys.executable, samepage_case=case)
        inventory = os.path.join(directory, 'hosts.yml')
        with open(inventory, 'w') as handle:
            yaml.safe_dump({'all': {'hosts': hosts}}, handle)
        playbook = os.path.join(directory, 'validate.yml')
        with open(playbook, 'w') as handle:
            yaml.safe_dump(PLAYBOOK, handle)
        run = run_playbook(playbook, inventory=inventory, extra_args=('--forks', '50'))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    by_case = {}
    names = {'case%04d' % number: case for number, case in enumerate(sorted(CASES))}
    for result in run.results:
        by_case.setdefault(names[result['host']], []).append(result)
    return by_case, run, {case: host for host, case in names.items()}


def _text(result):
    data = result['result']
    return str(data.get('msg', '')) + ' ' + ' '.join(data.get('argument_errors', []))


def test_every_input_of_every_role_is_in_the_table():
    assert len(INPUTS) >= 49
    assert {'ksm_neutralise_writers', 'ksm_settings.pages_to_scan', 'ksm_tuner_settings.cpu_budget',
            'ksmtuned_logfile'} <= set(INPUTS)


@pytest.mark.parametrize('case', sorted(CASES))
def test_hostile_value_fails_naming_the_input_or_is_a_documented_normalisation(validation, case):
    by_case, run, hosts = validation
    name, dummy, value_name = case.partition('=')
    stats = run.stats[hosts[case]]
    failed = [result for result in by_case.get(case, []) if result['status'] == 'failed']
    assert stats['changed'] == 0, stats
    reason = documented(name, value_name)
    if reason is not None and not failed:
        return
    assert len(failed) == 1, 'passed validation, and no reason is documented: %r' % (CASES[case],)
    text = _text(failed[0])
    assert 'Traceback' not in text, text
    assert name.rpartition('.')[2] in text, 'the failure does not name %s: %s' % (name, text)
