# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one failure path of the samepage.ksm modules.

Every layer of module_utils raises its own error type, all under SamepageError: _ksm.KsmError (the
kernel's KSM interface), _ksm_boot.BootConfigError (the boot unit), _systemd.SystemdError (systemctl).
A module catches SamepageError once and hands it to fail(), which reports the message, the error's
details and the partial result the module has gathered (what was there before, the writes made, the
state read back), so every module fails the same way and never claims more than happened. run_task()
is that main() in one call: exit_json with the task's result, or fail() with its partial result.

Private to samepage.ksm. Standard library only; no Ansible imports (the module object is passed in).
"""

# Details an error may carry that are worth handing back with the failure.
DETAILS = ('knob', 'value', 'errno', 'needed_bytes', 'budget_bytes', 'option', 'package', 'holder')


class SamepageError(Exception):
    """A failure the modules report as it is: msg names the knob, option or unit, the value and the reason.

    details are machine-readable facts about the failure (knob=, option=, errno=, ...); fail() returns
    those listed in DETAILS.
    """

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


def fail(module, err, partial=None):
    """module.fail_json for err, with the partial result (a dict) the module had when it failed.

    The partial result keeps its own `changed` (what really happened before the failure; False when
    absent); the error's details are added under their names where the result has no value for them.
    """
    result = dict(partial or {})
    result.setdefault('changed', False)
    for key in DETAILS:
        if key in err.details and result.get(key) is None:
            result[key] = err.details[key]
    result.pop('msg', None)
    module.fail_json(msg=err.msg, **result)


def run_task(module, task, partial):
    """The end of a module's main(): module.exit_json(**task()), or fail() with partial() when task raises
    a SamepageError.

    partial is called only after a failure, so it reports what the task had done by then.
    """
    try:
        result = task()
    except SamepageError as err:
        fail(module, err, partial())
    else:
        module.exit_json(**result)
