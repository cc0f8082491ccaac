# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""`labctl run`: the lab is up while the command runs, the command sees it, and it is stopped however
the command ends. The lab itself is a stand-in here (booting guests is the lab suite's business)."""

import os
import signal
import sys

import pytest

from ansible_collections.samepage.ksm.lab.samepage_lab import LabError, run_with_lab


class StandInLab:
    def __init__(self, state_dir, fail_up=False):
        self.state_dir = str(state_dir)
        self.inventory = os.path.join(self.state_dir, 'inventory', 'hosts.yml')
        self.fail_up = fail_up
        self.events = []

    def up(self, tie_to_parent=False):
        self.events.append(('up', tie_to_parent))
        if self.fail_up:
            raise RuntimeError('no guest answered')

    def down(self, quiet=False):
        self.events.append(('down',))


def test_runs_the_command_against_the_lab_and_stops_it(tmp_path):
    lab = StandInLab(tmp_path / 'state')
    seen = tmp_path / 'seen'
    code = ('import os, sys; open(sys.argv[1], "w").write(os.environ["SAMEPAGE_LAB_REUSE"] + "|" + '
            'os.environ["SAMEPAGE_LAB_INVENTORY"] + "|" + open(os.path.join(os.environ["SAMEPAGE_LAB_REUSE"], '
            '"owner.pid")).read().strip()); sys.exit(3)')
    assert run_with_lab(lab, [sys.executable, '-c', code, str(seen)]) == 3
    reuse, inventory, owner = seen.read_text().split('|')
    assert (reuse, inventory, int(owner)) == (lab.state_dir, lab.inventory, os.getpid())
    assert lab.events == [('up', True), ('down',)]
    assert not os.path.exists(os.path.join(lab.state_dir, 'owner.pid'))


def test_stops_the_lab_when_it_does_not_come_up(tmp_path):
    lab = StandInLab(tmp_path / 'state', fail_up=True)
    with pytest.raises(RuntimeError):
        run_with_lab(lab, [sys.executable, '-c', 'raise SystemExit(0)'])
    assert lab.events == [('up', True), ('down',)]


def test_refuses_no_command(tmp_path):
    lab = StandInLab(tmp_path / 'state')
    with pytest.raises(LabError, match='no command given'):
        run_with_lab(lab, [])
    assert lab.events == []


def test_a_signal_goes_to_the_command_and_the_lab_is_stopped(tmp_path):
    lab = StandInLab(tmp_path / 'state')
    # The command signals labctl (its parent) with SIGTERM, then waits to be ended by it.
    code = 'import os, signal, time; os.kill(os.getppid(), signal.SIGTERM); time.sleep(30)'
    previous = signal.getsignal(signal.SIGTERM)
    rc = run_with_lab(lab, [sys.executable, '-c', code])
    assert rc == -signal.SIGTERM                   # the command got the SIGTERM labctl received
    assert lab.events == [('up', True), ('down',)]
    assert signal.getsignal(signal.SIGTERM) is previous   # labctl's handlers are undone
