# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
name: metrics_config_error
short_description: Why settings of the KSM metrics writer are not valid (empty when they are)
version_added: 0.1.0
description:
  - Checks the C(directory) and C(interval) of O(_input) of M(samepage.ksm.ksm_metrics) with the very checks
    the module applies, so that a role can refuse a bad value before anything changes.
  - Returns an empty string when both are valid, otherwise the reason, naming the option.
positional: _input
options:
  _input:
    description: The settings, a dictionary with C(directory) and C(interval) (either may be left out).
    type: dict
    required: true
author:
  - samepage.ksm contributors (@samepage)
'''

EXAMPLES = r'''
- name: Refuse a bad metrics directory or interval before anything changes
  ansible.builtin.assert:
    that: "{'directory': ksm_metrics_directory, 'interval': ksm_metrics_interval} | samepage.ksm.metrics_config_error == ''"

# {'directory': '/var/lib/prometheus/node-exporter', 'interval': 60} -> ""
# {'interval': 1} -> "Invalid interval 1: expected whole seconds from 5 to 86400"
'''

RETURN = r'''
_value:
  description: The empty string when the settings are valid, otherwise why they are not.
  type: str
  sample: "Invalid interval 1: expected whole seconds from 5 to 86400"
'''

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_metrics


def metrics_config_error(settings):
    """'' when the directory and interval are what ksm_metrics accepts, else why not (its own words)."""
    if not isinstance(settings, dict):
        return 'expected a dictionary with directory and interval, not %r' % (settings,)
    try:
        if 'directory' in settings:
            _ksm_metrics.check_path('directory', settings['directory'])
        if 'interval' in settings:
            _ksm_metrics.check_interval(settings['interval'])
    except _ksm_metrics.MetricsConfigError as err:
        return err.msg
    return ''


class FilterModule:
    """samepage.ksm's filters."""

    def filters(self):
        return {'metrics_config_error': metrics_config_error}
