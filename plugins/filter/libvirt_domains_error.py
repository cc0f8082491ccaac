# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
name: libvirt_domains_error
short_description: Why a list of libvirt domain names and patterns is not valid (empty when it is)
version_added: 0.1.0
description:
  - >-
    Checks a list of libvirt domain names and shell-style patterns with the very rules of the
    O(samepage.ksm.libvirt_nosharepages#module:domains) option of M(samepage.ksm.libvirt_nosharepages) (letters,
    digits and C(. _ - + : @); patterns also C(* ? [ ] !)), so that a role can refuse a bad name before anything
    changes on any host.
  - Whether the names exist is only known on the host; the module checks that.
  - Returns an empty string for a valid list, otherwise the reason, naming each bad entry.
positional: _input
options:
  _input:
    description: The names and patterns, a list of strings.
    type: raw
    required: true
  option:
    description: The name of the variable the list comes from, used in the reason.
    type: str
    default: domains
author:
  - samepage.ksm contributors (@samepage)
'''

EXAMPLES = r'''
- name: Refuse a bad domain name before anything changes
  ansible.builtin.assert:
    that: ksm_nosharepages_domains | samepage.ksm.libvirt_domains_error('ksm_nosharepages_domains') == ''
    fail_msg: "{{ ksm_nosharepages_domains | samepage.ksm.libvirt_domains_error('ksm_nosharepages_domains') }}"

# ["tenant-*", "web01"] -> "", ["web01;reboot"] -> "Invalid domain name or pattern in domains: 'web01;reboot' contains ';' ..."
'''

RETURN = r'''
_value:
  description: The empty string when every entry is valid, otherwise the reason (naming each bad entry).
  type: str
  sample: "Invalid domain name or pattern in ksm_nosharepages_domains: 'web01;reboot' contains ';'. ..."
'''

from ansible_collections.samepage.ksm.plugins.module_utils import _libvirt


def libvirt_domains_error(value, option='domains'):
    """'' when `value` is a valid list of domain names and patterns, else why not (_libvirt.check_selectors)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        return '%s must be a list of domain names or patterns, not %r' % (option, value)
    try:
        _libvirt.check_selectors([str(item) if isinstance(item, str) else item for item in value], option=option)
    except _libvirt.LibvirtError as err:
        return err.msg
    return ''


class FilterModule:
    """samepage.ksm's filters."""

    def filters(self):
        return {'libvirt_domains_error': libvirt_domains_error}
