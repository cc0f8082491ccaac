# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The metrics_config_error filter: the checks of ksm_metrics (_ksm_metrics), for the role's variables."""

import pytest

from ansible_collections.samepage.ksm.plugins.filter.metrics_config_error import FilterModule, metrics_config_error
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_metrics


@pytest.mark.parametrize('settings', [{'directory': '/var/lib/prometheus/node-exporter', 'interval': 60},
                                      {'directory': '/var/lib/node_exporter/textfile_collector', 'interval': 5},
                                      {'interval': 86400}, {}])
def test_valid_settings_give_no_error(settings):
    assert metrics_config_error(settings) == ''


@pytest.mark.parametrize('settings,reason', [
    ({'interval': 4}, 'Invalid interval 4: expected whole seconds from 5 to 86400'),
    ({'interval': '60'}, "Invalid interval '60'"),
    ({'interval': True}, 'Invalid interval True'),
    ({'directory': 'relative'}, "Invalid directory 'relative': expected an absolute path"),
    ({'directory': '/var/lib/node exporter'}, "Invalid directory '/var/lib/node exporter'"),
    ({'directory': '/var/lib/x/../../etc'}, "Invalid directory '/var/lib/x/../../etc'"),
    ('60', "expected a dictionary with directory and interval"),
])
def test_bad_settings_give_the_modules_reason(settings, reason):
    assert reason in metrics_config_error(settings)


def test_the_verdict_is_the_modules():
    for interval in (0, 5, 60, 86400, 86401):
        try:
            _ksm_metrics.render_timer(interval)
            accepted = True
        except _ksm_metrics.MetricsConfigError:
            accepted = False
        assert (metrics_config_error({'interval': interval}) == '') is accepted, interval


def test_the_filter_is_registered():
    assert FilterModule().filters() == {'metrics_config_error': metrics_config_error}
