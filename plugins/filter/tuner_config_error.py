# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
name: tuner_config_error
short_description: Why a samepage tuner configuration is not valid (empty when it is)
version_added: 0.1.0
description:
  - Checks a mapping of settings of the samepage tuner (the O(samepage.ksm.ksm_tuner#module:config) option of
    M(samepage.ksm.ksm_tuner), the role variable C(ksm_tuner_settings)) with the very rules the module and the
    daemon apply (C(_ksm_tuner.validate)), so that a role can refuse a bad value before anything changes.
  - Keys whose value is V(null) count as not given.
  - Returns an empty string for a valid configuration, otherwise the reason it is not valid (naming the key,
    the value and the accepted values).
positional: _input
options:
  _input:
    description: The settings to check, a mapping of key to value.
    type: raw
    required: true
author:
  - samepage.ksm contributors (@samepage)
'''

EXAMPLES = r'''
- name: Refuse a bad tuner setting before anything changes
  ansible.builtin.assert:
    that: ksm_tuner_settings | samepage.ksm.tuner_config_error == ''
    fail_msg: "ksm_tuner_settings is not valid: {{ ksm_tuner_settings | samepage.ksm.tuner_config_error }}"

# {cpu_budget: 10} -> "", {cpu_budget: 0} -> "Invalid value 0 for cpu_budget: expected a number from 0.1 to 100 ..."
'''

RETURN = r'''
_value:
  description: The empty string when the settings are valid, otherwise the reason they are not.
  type: str
  sample: "Invalid value 0 for cpu_budget: expected a number from 0.1 to 100 (percent of one core)"
'''

from collections.abc import Mapping

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_tuner


def _plain(value):
    """Ansible's tagged strings and numbers as the plain Python types _ksm_tuner.validate expects."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def tuner_config_error(value):
    """'' when `value` is a valid tuner configuration, else why not (in the words of _ksm_tuner.validate)."""
    if value is None:
        return ''
    if not isinstance(value, Mapping):
        return 'expected a mapping of tuner settings to values, not %r' % (value,)
    settings = {str(key): _plain(item) for key, item in value.items() if item is not None}
    try:
        _ksm_tuner.validate(settings)
    except _ksm_tuner.ConfigError as err:
        return err.msg
    return ''


class FilterModule:
    """samepage.ksm's filters."""

    def filters(self):
        return {'tuner_config_error': tuner_config_error}
