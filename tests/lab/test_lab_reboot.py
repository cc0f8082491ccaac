# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A real reboot: settings persisted by ksm_sysfs (persist=true) and service states set by ksm_service
are in place again afterwards, on Debian 12, on the two-node Debian 13 guest and with KSM kept off.

The guests reboot at the same time (`systemctl reboot`; QEMU restarts the same kernel and keeps the
guest's disk writes, which snapshot=on holds for the life of the QEMU process).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

from ansible_collections.samepage.ksm.tests.lab.labtools import (
    four_steps, module, read_ksm, remove_boot_config, reset_ksm, unit_state)

SYSFS = 'samepage.ksm.ksm_sysfs'
SERVICE = 'samepage.ksm.ksm_service'


def _reboot_all(guests):
    errors = []

    def reboot(guest):
        try:
            guest.reboot(progress=False)
        except Exception as exc:  # collected and reported below, after every reboot has ended
            errors.append(exc)

    threads = [threading.Thread(target=reboot, args=(g,)) for g in guests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, '\n'.join(str(e) for e in errors)


def test_persisted_settings_and_services_survive_a_reboot(lab, debian12, numa_guest, debian13):
    on = {
        debian12: {'run': True, 'pages_to_scan': 2345, 'sleep_millisecs': 45, 'merge_across_nodes': 'auto'},
        numa_guest: {'run': True, 'pages_to_scan': 3456, 'sleep_millisecs': 55, 'merge_across_nodes': 'auto'},
    }
    off = {debian13: {'run': False, 'pages_to_scan': 777}}
    try:
        # The image's starting point: ksm.service and ksmtuned enabled and running, no boot configuration.
        for guest in (debian12, numa_guest, debian13):
            guest.ssh('systemctl unmask ksm.service ksmtuned.service; '
                      'systemctl enable --now ksm.service ksmtuned.service')
            reset_ksm(guest, stop_tuned=False)
            remove_boot_config(lab, guest)
        # Static settings where ksmd runs: ksmtuned must not start at boot and rewrite them.
        for guest, knobs in on.items():
            four_steps(lab, guest, SERVICE, {'name': 'ksmtuned', 'state': 'stopped', 'enabled': False})
            four_steps(lab, guest, SYSFS, dict(knobs, persist=True))
        # KSM off: ksmtuned (which Requires= ksm.service, so it would start it) and ksm.service (which
        # writes run=1 when it starts) disabled, run=0 persisted.
        four_steps(lab, debian13, SERVICE, {'name': 'ksmtuned', 'state': 'stopped', 'enabled': False})
        four_steps(lab, debian13, SERVICE, {'name': 'ksm', 'state': 'stopped', 'enabled': False})
        four_steps(lab, debian13, SYSFS, dict(off[debian13], persist=True))

        _reboot_all([debian12, numa_guest, debian13])

        for guest, knobs in on.items():
            live = read_ksm(guest)
            assert live['run'] == '1', guest.name
            assert live['pages_to_scan'] == str(knobs['pages_to_scan']), guest.name
            assert live['sleep_millisecs'] == str(knobs['sleep_millisecs']), guest.name
            assert live['merge_across_nodes'] == ('0' if guest.numa_nodes > 1 else '1'), guest.name
            assert unit_state(guest, 'ksmtuned.service') == ('inactive', 'disabled'), guest.name
            # The same tasks find nothing to do after the reboot.
            again = module(lab, guest, SYSFS, dict(knobs, persist=True))
            assert not again['failed'] and again['changed'] is False, again.get('msg')
        live = read_ksm(debian13)
        assert (live['run'], live['pages_to_scan']) == ('0', '777')
        assert unit_state(debian13, 'ksm.service') == ('inactive', 'disabled')
        assert unit_state(debian13, 'ksmtuned.service') == ('inactive', 'disabled')
    finally:
        for guest in (debian12, numa_guest, debian13):
            remove_boot_config(lab, guest)
            guest.ssh('systemctl enable ksm.service ksmtuned.service', check=False)
            reset_ksm(guest)
