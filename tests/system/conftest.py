# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures of the system suite: tests against THIS machine's real /sys/kernel/mm/ksm.

`ksm_host` holds the host lock (/tmp/samepage-ksm-host.lock) for the test, snapshots every writable
knob, and afterwards unmerges anything shared and puts every knob back (tests/support/ksm_host.py).
Tests that use it are skipped, with the reason, where the real KSM cannot be changed (no KSM in the
kernel, not root, read-only /sys).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.samepage.ksm.tests.support.ksm_host import ksm_host_guard, skip_reason


@pytest.fixture
def ksm_host():
    """KsmHost of the real kernel, exclusively held and restored after the test."""
    reason = skip_reason()
    if reason:
        pytest.skip('real KSM not usable: %s' % reason)
    with ksm_host_guard() as host:
        yield host
