# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""samepage.ksm.ksm_service on THIS machine, where systemd is not PID 1: a clear failure, never a
traceback, in every mode. (Real systemd is proven in the lab: tests/lab/test_ksm_service.py.)"""

import os

import pytest

from ansible_collections.samepage.ksm.tests.support.ansible_cli import run_module

pytestmark = pytest.mark.skipif(os.path.isdir('/run/systemd/system'),
                                reason='systemd runs as PID 1 here: the lab covers ksm_service')


@pytest.mark.every_controller
@pytest.mark.parametrize('args', [
    {'name': 'ksm', 'state': 'started'},
    {'name': 'ksmtuned', 'state': 'stopped', 'enabled': False, 'must_exist': False},
    {'name': 'ksmtuned', 'state': 'retuned'},
])
@pytest.mark.parametrize('check', [False, True])
def test_without_systemd_a_clear_failure(args, check):
    result = run_module('samepage.ksm.ksm_service', args, check=check, diff=True)
    assert result['failed'] is True and result['changed'] is False
    assert result['msg'].startswith('systemd is not running as PID 1 on this host (/run/systemd/system does not '
                                    'exist)'), result['msg']
    assert 'samepage.ksm.ksm_sysfs' in result['msg']
    # fail_json, not a crash: ansible-core 2.19+ reports "(traceback unavailable)" for a module's own failure
    assert 'Traceback (most recent call last)' not in result.output
    assert 'Traceback (most recent call last)' not in str(result.get('exception', ''))
