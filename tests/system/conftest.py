# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures of the system suite: tests against THIS machine's real /sys/kernel/mm/ksm.

`ksm_host` snapshots every writable knob and afterwards unmerges anything shared and puts every knob
back (tests/support/ksm_host.py); the host lock (/tmp/samepage-ksm-host.lock) is taken at the first
test that uses it and held until the session ends (`ksm_host_lock`).
Tests that use it are skipped, with the reason, where the real KSM cannot be changed (no KSM in the
kernel, not root, read-only /sys).
"""

import contextlib
import sys

import pytest

from ansible_collections.samepage.ksm.tests.support.ksm_host import hold_host_lock, ksm_host_guard, skip_reason


@pytest.fixture(scope='session')
def ksm_host_lock(request):
    """The host lock, taken at the first test that needs the real KSM and held to the end of the session.

    Taking it once per session rather than once per test keeps other users of the host (other test
    runs, benchmarks) from slipping in between tests, and a session from waiting for the lock 60 times.
    """
    reason = skip_reason()
    if reason:
        pytest.skip('real KSM not usable: %s' % reason)
    capture = request.config.pluginmanager.getplugin('capturemanager')

    def say(text):
        # Past pytest's output capture: whoever waits should see why.
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            sys.stderr.write('\n[ksm_host] %s\n' % text)
            sys.stderr.flush()

    with hold_host_lock(say=say):
        yield


@pytest.fixture
def ksm_host(ksm_host_lock):
    """KsmHost of the real kernel, exclusively held and restored after the test."""
    with ksm_host_guard() as host:
        yield host
