# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Drive a module's main() in-process and get its result: a small replacement for pytest-ansible.

    result = run_main(ksm_info.main, {'max_processes': 0}, check_mode=True)
    assert result['failed'] is False and result['changed'] is False

The arguments reach AnsibleModule the way ansible-core hands them over (ansible.module_utils.testing,
ansible-core 2.19+); exit_json and fail_json are intercepted, so the result is the dict the module
returned, with `failed` set, and `warnings` holds what module.warn() said.
"""

from unittest import mock

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args


class ModuleExit(Exception):
    """exit_json or fail_json was called."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


def run_main(main, args=None, check_mode=False, diff=False):
    """Run main() with args; return the result dict (failed=True when fail_json was called)."""
    args = dict(args or {})
    if check_mode:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    warnings = []

    def exit_json(module, **kwargs):
        kwargs.setdefault('changed', False)
        kwargs['failed'] = False
        kwargs['warnings'] = warnings
        raise ModuleExit(kwargs)

    def fail_json(module, msg, **kwargs):
        kwargs['msg'] = msg
        kwargs.setdefault('changed', False)
        kwargs['failed'] = True
        kwargs['warnings'] = warnings
        raise ModuleExit(kwargs)

    def warn(module, warning):
        warnings.append(warning)

    with patch_module_args(args), \
            mock.patch.object(basic.AnsibleModule, 'exit_json', exit_json), \
            mock.patch.object(basic.AnsibleModule, 'fail_json', fail_json), \
            mock.patch.object(basic.AnsibleModule, 'warn', warn):
        try:
            main()
        except ModuleExit as done:
            return done.result
    raise AssertionError('main() returned without calling exit_json or fail_json')
