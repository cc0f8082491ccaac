# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
name: memory_margin_error
short_description: Why a value is not a valid memory margin (empty when it is)
version_added: 0.1.0
description:
  - Checks a value against the grammar of the C(memory_margin) option of M(samepage.ksm.ksm_sysfs) and
    M(samepage.ksm.ksm_unmerge) - a percentage of total memory such as V(5%) (at most 100 %), or a size
    with an optional binary unit such as V(512M), V(2G) or V(0) - with the very parser those modules use,
    so that a role can refuse a bad margin before anything changes.
  - Returns an empty string for a valid margin, otherwise the reason it is not valid.
positional: _input
options:
  _input:
    description: The margin to check (a string, or a number of bytes).
    type: raw
    required: true
author:
  - samepage.ksm contributors (@samepage)
'''

EXAMPLES = r'''
- name: Refuse a bad margin before anything changes
  ansible.builtin.assert:
    that: ksm_memory_margin | samepage.ksm.memory_margin_error == ''
    fail_msg: >-
      ksm_memory_margin {{ ksm_memory_margin | string | to_json }} is not valid:
      {{ ksm_memory_margin | samepage.ksm.memory_margin_error }}

# "5%" -> "", "512M" -> "", "150%" -> "a percentage cannot exceed 100%"
'''

RETURN = r'''
_value:
  description: The empty string when the value is a valid margin, otherwise the reason it is not.
  type: str
  sample: expected a percentage of total memory such as "5%" or a size such as "512M" or "2G"
'''

from ansible_collections.samepage.ksm.plugins.module_utils._ksm import parse_margin, KsmError

# parse_margin's messages start with the value and the module option ("Invalid memory margin '5 percent'
# (option memory_margin): <reason>"); a role names its own variable, so it takes only the reason.
_OPTION_PREFIX = '(option memory_margin): '


def memory_margin_error(value):
    """'' when `value` is a valid memory margin, else why not (in the words of _ksm.parse_margin)."""
    try:
        parse_margin(str(value), mem_total=1)
    except KsmError as err:
        message = err.msg
        _before, found, reason = message.partition(_OPTION_PREFIX)
        return reason if found and reason else message
    return ''


class FilterModule:
    """samepage.ksm's filters."""

    def filters(self):
        return {'memory_margin_error': memory_margin_error}
