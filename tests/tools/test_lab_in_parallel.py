# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""samepage_lab.common.in_parallel: how the lab builds its images and waits for its guests side by side."""

import threading
import time

from ansible_collections.samepage.ksm.lab.samepage_lab.common import in_parallel


def test_every_item_runs_in_a_thread_of_its_own_and_failures_come_back_after_all_have_ended():
    done = []
    names = []

    def work(item):
        names.append(threading.current_thread().name)
        if item == 'bad':
            raise ValueError('bad item')
        time.sleep(0.2)             # ends after the failure: its result must still be waited for
        done.append(item)

    errors = in_parallel(work, ['a', 'bad', 'b'], lambda item: 'work-' + item)
    assert sorted(done) == ['a', 'b']
    assert [str(exc) for exc in errors] == ['bad item']
    assert sorted(names) == ['work-a', 'work-b', 'work-bad']


def test_nothing_failed():
    assert in_parallel(lambda item: None, [1, 2], str) == []
