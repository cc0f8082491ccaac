# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The memory_margin_error filter: the verdict of _ksm.parse_margin, worded for a role variable."""

import pytest

from ansible_collections.samepage.ksm.plugins.filter.memory_margin_error import FilterModule, memory_margin_error
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm

GRAMMAR = 'expected a percentage of total memory such as "5%" or a size such as "512M" or "2G"'


@pytest.mark.parametrize('value', ['5%', '0', 0, 536870912, '512M', '2G', '2GiB', '1.5g', ' 10 % ', '100%', '7kb', '3T'])
def test_valid_margins_give_no_error(value):
    assert memory_margin_error(value) == ''
    _ksm.parse_margin(str(value), 1)    # the modules accept exactly these


@pytest.mark.parametrize('value', ['5 percent', '', '-5%', '5%%', '1e3', 'G', '5 G B', '5%;reboot', [], {}, None, True])
def test_bad_margins_give_the_parsers_reason(value):
    assert memory_margin_error(value) == GRAMMAR


def test_a_percentage_above_100_is_refused():
    assert memory_margin_error('150%') == 'a percentage cannot exceed 100%'
    assert memory_margin_error('100.5 %') == 'a percentage cannot exceed 100%'


def test_the_verdict_is_the_parsers():
    """Whatever parse_margin refuses, the filter refuses, and the other way round."""
    for value in ('5%', '5 percent', '101%', '64k', '64 kB', '64 kiB', '1.', '.5G', '12'):
        try:
            _ksm.parse_margin(value, 1)
            accepted = True
        except _ksm.KsmError:
            accepted = False
        assert (memory_margin_error(value) == '') is accepted, value


def test_the_filter_is_registered():
    assert FilterModule().filters() == {'memory_margin_error': memory_margin_error}
