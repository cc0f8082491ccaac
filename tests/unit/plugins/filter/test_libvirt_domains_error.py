# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The libvirt_domains_error filter: the verdict of _libvirt.check_selectors, worded for a role variable."""

import pytest

from ansible_collections.samepage.ksm.plugins.filter.libvirt_domains_error import FilterModule, libvirt_domains_error
from ansible_collections.samepage.ksm.plugins.module_utils import _libvirt


@pytest.mark.parametrize('value', [['tenant-*'], ['web01', 'db.prod', 'vm[0-9]', 'vm[!0]', 'a+b:c@d', 'gäst']])
def test_valid_lists_give_no_error(value):
    assert libvirt_domains_error(value, 'ksm_nosharepages_domains') == ''
    assert _libvirt.check_selectors(value) == value     # the module accepts exactly these


@pytest.mark.parametrize('value, words', [
    (['web01;reboot'], "'web01;reboot' contains ';'"),
    (['$(id)'], "'$(id)' contains '$', '(', ')'"),
    (['a b', ''], "'a b' contains ' '; '' is empty"),
    (['!x'], "'!x' contains '!' outside a bracket expression"),
    ([], 'ksm_nosharepages_domains is empty'),
])
def test_bad_entries_are_named_with_the_variable(value, words):
    reason = libvirt_domains_error(value, 'ksm_nosharepages_domains')
    assert words in reason, reason
    if value:
        assert reason.startswith('Invalid domain name or pattern in ksm_nosharepages_domains: ')


@pytest.mark.parametrize('value', ['tenant-*', {'tenant': 1}, None, 5])
def test_anything_but_a_list_is_refused(value):
    assert libvirt_domains_error(value, 'ksm_nosharepages_domains').startswith(
        'ksm_nosharepages_domains must be a list of domain names or patterns')


def test_the_filter_is_registered():
    assert FilterModule().filters() == {'libvirt_domains_error': libvirt_domains_error}
