# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""tools/ci.sh runs one pytest per lab guest group: a group missing there would leave its tests unrun."""

import os
import re

from ansible_collections.samepage.ksm.tests.lab.conftest import GUEST_FIXTURES

CI_SCRIPT = os.path.join(os.path.dirname(__file__), '..', '..', 'tools', 'ci.sh')


def test_ci_runs_every_guest_group_of_the_lab_suite():
    with open(CI_SCRIPT) as handle:
        match = re.search(r'^LAB_GROUPS="([^"]*)"', handle.read(), re.MULTILINE)
    assert match, 'LAB_GROUPS not found in tools/ci.sh'
    assert sorted(match.group(1).split()) == sorted(set(GUEST_FIXTURES.values()))
