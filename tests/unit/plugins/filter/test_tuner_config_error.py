# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The tuner_config_error filter: the verdict of _ksm_tuner.validate, for the ksm role's ksm_tuner_settings."""

import pytest

from ansible_collections.samepage.ksm.plugins.filter.tuner_config_error import FilterModule, tuner_config_error
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_tuner


@pytest.mark.parametrize('value', [
    {}, None, {'cpu_budget': 10}, {'cpu_budget': 12.5, 'budget_window': 120}, {'budget_window': '120'},
    {'process_poll_seconds': 0}, {'pressure_gate': 20, 'log_level': 'debug'}, {'idle_sleep_millisecs': None},
    dict(_ksm_tuner.DEFAULTS),
])
def test_valid_settings_give_no_error(value):
    assert tuner_config_error(value) == ''


@pytest.mark.parametrize('value, reason', [
    ({'cpu_budget': 0}, 'Invalid value 0 for cpu_budget: expected a number from 0.1 to 100 (percent of one core)'),
    ({'budget_window': 5}, 'Invalid value 5 for budget_window: expected an integer from 10 to 3600 (seconds)'),
    ({'budget_window': '60\n'}, "Invalid value '60\\n' for budget_window"),
    ({'pressure_gate': 100}, 'for pressure_gate: expected an integer from 1 to 99, or 0 (off)'),
    ({'log_level': 'loud'}, "Invalid value 'loud' for log_level: expected one of debug, info, warning, error"),
    ({'cpu_budget': True}, 'Invalid value True for cpu_budget'),
    ({'cpu_budget': float('nan')}, 'Invalid value nan for cpu_budget'),
    ({'cpu_budgett': 10}, "Unknown key 'cpu_budgett'"),
    ([], 'expected a mapping of tuner settings to values'),
    ('cpu_budget=10', 'expected a mapping of tuner settings to values'),
])
def test_bad_settings_give_the_validators_reason(value, reason):
    assert reason in tuner_config_error(value)


def test_the_verdict_is_the_validators():
    """Whatever _ksm_tuner.validate refuses, the filter refuses, and the other way round."""
    for value in ({'cpu_budget': 0.1}, {'cpu_budget': 0.09}, {'fast_sleep_millisecs': 1001}, {'gain_threshold': 0},
                  {'idle_cpu_limit': '0.01'}, {'idle_cpu_limit': '1e-2'}, {'process_poll_seconds': 0.4}):
        try:
            _ksm_tuner.validate(value)
            accepted = True
        except _ksm_tuner.ConfigError:
            accepted = False
        assert (tuner_config_error(value) == '') is accepted, value


def test_the_filter_is_registered():
    assert FilterModule().filters() == {'tuner_config_error': tuner_config_error}
