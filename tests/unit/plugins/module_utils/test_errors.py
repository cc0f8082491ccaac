# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""plugins/module_utils/_errors.py: the one failure path (fail) and the end of every main() (run_task).

Plain pytest, no Ansible import: the module object is a recorder with AnsibleModule's exit_json/fail_json
signatures, which, like AnsibleModule's, never return.
"""

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _errors


class Exited(Exception):
    pass


class Module:
    def __init__(self):
        self.exited = None

    def exit_json(self, **result):
        self.exited = ('exit', result)
        raise Exited()

    def fail_json(self, msg, **result):
        self.exited = ('fail', dict(result, msg=msg))
        raise Exited()


def run_task(task, partial):
    module = Module()
    with pytest.raises(Exited):
        _errors.run_task(module, task, partial)
    return module.exited


def test_run_task_exits_with_the_result_and_never_asks_for_the_partial_one():
    def partial():
        raise AssertionError('partial() called without a failure')
    assert run_task(lambda: {'changed': True, 'msg': 'done'}, partial) == ('exit', {'changed': True, 'msg': 'done'})


def test_run_task_fails_with_the_partial_result_as_it_is_after_the_failure():
    done = {'changed': False, 'writes': []}

    def task():
        done.update(changed=True, writes=['run=2'])
        raise _errors.SamepageError('Cannot set run=1: the reason', knob='run', errno=1, unknown='left out')
    assert run_task(task, lambda: done) == ('fail', {'changed': True, 'writes': ['run=2'], 'knob': 'run', 'errno': 1,
                                                     'msg': 'Cannot set run=1: the reason'})


def test_run_task_lets_other_errors_through():
    def task():
        raise ValueError('a bug, not a failure to report')
    with pytest.raises(ValueError):
        _errors.run_task(Module(), task, dict)


def test_fail_keeps_the_partial_values_before_the_details():
    module = Module()
    with pytest.raises(Exited):
        _errors.fail(module, _errors.SamepageError('refused', needed_bytes=5, budget_bytes=3),
                     {'needed_bytes': 4, 'budget_bytes': None, 'msg': 'a stale message'})
    assert module.exited == ('fail', {'changed': False, 'needed_bytes': 4, 'budget_bytes': 3, 'msg': 'refused'})
