# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""site.yml against the lab (the playbook `make demo` runs): applies, is idempotent, and leaves each
group in the state its group_vars describe."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.samepage.ksm.tests.lab.labtools import (
    REPO, playbook, read_ksm, remove_boot_config, reset_ksm, unit_state)

SITE = os.path.join(REPO, 'site.yml')


def _changed(run):
    return dict((host, stats.get('changed', 0)) for host, stats in run.stats.items())


def test_site_yml(lab, guests):
    for guest in guests.values():
        reset_ksm(guest, stop_tuned=False)
        guest.ssh('systemctl enable --now ksm.service ksmtuned.service')
    try:
        first = playbook(lab, SITE, diff=True)
        assert first.rc == 0, first.output[-4000:]
        assert set(first.stats) == set(guests)
        assert all(stats['failed'] == 0 and stats['unreachable'] == 0 for stats in first.stats.values())
        assert all(count > 0 for count in _changed(first).values()), _changed(first)

        again = playbook(lab, SITE)
        assert again.rc == 0, again.output[-4000:]
        assert all(count == 0 for count in _changed(again).values()), (_changed(again), again.output[-4000:])
        check = playbook(lab, SITE, check=True)
        assert check.rc == 0 and all(count == 0 for count in _changed(check).values()), _changed(check)

        for guest in guests.values():
            live = read_ksm(guest)
            if guest.group == 'secure':
                assert live['run'] in ('0', '2') and live['pages_shared'] == '0', guest.name
                assert unit_state(guest, 'ksm.service') == ('inactive', 'disabled')
            else:
                # site.yml applies the roles: ksmtuned runs there and owns run/pages_to_scan/sleep_millisecs
                assert unit_state(guest, 'ksmtuned.service') == ('active', 'enabled'), guest.name
                assert live['merge_across_nodes'] == ('0' if guest.numa_nodes > 1 else '1'), guest.name
            if guest.group == 'dense':
                assert live['max_page_sharing'] == '512'
    finally:
        for guest in guests.values():
            remove_boot_config(lab, guest)
            guest.ssh('systemctl enable ksm.service ksmtuned.service', check=False)
            reset_ksm(guest)
