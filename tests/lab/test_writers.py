# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Issue #11, competing writers, on the Debian 13 guest with Debian's own ksmtuned and tuned: a TuneD profile
that writes KSM ([sysfs] lines in /etc/tuned, including a vendor profile) and ksmtuned running. The ksm role
(fixed scan rate, ksm_tuner: none) warns once about TuneD, naming the profile file and line and what to
change, and says nothing about ksmtuned, which it stops and disables itself. With ksm_neutralise_writers:
[tuned] it appends the guard profile; `systemctl restart tuned` and a reboot then leave the role's values.

Needs `tuned` in the lab image (lab/samepage_lab/images.py PACKAGES; Debian enables tuned.service on
install, the test starts it itself and leaves it stopped and disabled). Run alone:

    flock /tmp/samepage-dev-lab-slot.lock /var/cache/samepage-ksm/venv/controller-2.21/bin/python \\
        -m pytest -p no:cacheprovider tests/lab/test_writers.py
"""

import json
import os
import shutil
import tempfile

import pytest

from ansible_collections.samepage.ksm.tests.lab.labtools import playbook, read_ksm, reset_ksm, unit_state

PROFILE = 'samepage-lab-ksm'
# Written where the TuneD of the guest reads user profiles (2.23+: /etc/tuned/profiles; before: /etc/tuned).
PROFILE_TEXT = ('[main]\nsummary=Lab: a site profile that writes KSM\ninclude=virtual-guest\n\n'
                '[sysfs]\n/sys/kernel/mm/ksm/pages_to_scan = 64\n/sys/kernel/mm/ksm/sleep_millisecs = 1000\n'
                '/sys/kernel/mm/ksm/run = 0\n')
ROLE_VARS = {'ksm_tuner': 'none', 'ksm_settings': {'pages_to_scan': 1500, 'sleep_millisecs': 30}}
WANTED = {'run': '1', 'pages_to_scan': '1500', 'sleep_millisecs': '30'}


def run_role(lab, guest, variables):
    play = [{'name': 'the ksm role', 'hosts': guest.name, 'become': True, 'gather_facts': False,
             'roles': [{'role': 'samepage.ksm.ksm', 'vars': variables}]}]
    directory = tempfile.mkdtemp(prefix='samepage-writers-')
    try:
        path = os.path.join(directory, 'play.yml')
        with open(path, 'w') as handle:
            json.dump(play, handle)
        run = playbook(lab, path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert run.stats[guest.name]['failed'] == 0, run.output[-4000:]
    return run


def knobs(guest):
    live = read_ksm(guest)
    return {name: live[name] for name in WANTED}


def warnings_of(run):
    return [warning for result in run.results for warning in result['result'].get('warnings', [])]


@pytest.fixture
def tuned_writer(lab, debian13):
    """TuneD running the lab profile (it writes run=0, pages_to_scan=64, sleep_millisecs=1000) and ksmtuned
    running; afterwards TuneD stopped and disabled, the profiles and the role's boot configuration removed."""
    guest = debian13
    reset_ksm(guest)
    profiles = guest.ssh('test -d /usr/lib/tuned/profiles && echo /etc/tuned/profiles || echo /etc/tuned').stdout.strip()
    guest.ssh('mkdir -p {0}/{1} && cat > {0}/{1}/tuned.conf'.format(profiles, PROFILE), input=PROFILE_TEXT)
    guest.ssh('systemctl enable --now tuned.service && tuned-adm profile %s && systemctl start ksmtuned.service'
              % PROFILE)
    assert knobs(guest) == {'run': '0', 'pages_to_scan': '64', 'sleep_millisecs': '1000'}
    yield guest, profiles
    guest.ssh('systemctl disable --now tuned.service; rm -rf {0}/{1} {0}/samepage-ksm-guard /etc/tuned/active_profile '
              '/etc/tuned/profile_mode; rm -f /etc/systemd/system/sysinit.target.wants/samepage-ksm-sysfs.service '
              '/etc/systemd/system/samepage-ksm-sysfs.service; systemctl daemon-reload'.format(profiles, PROFILE),
              check=False)
    reset_ksm(guest)


def test_role_warns_about_tuned_then_neutralises_it_across_restart_and_reboot(lab, tuned_writer):
    guest, profiles = tuned_writer

    # 1. Without the option: the role sets its values and warns, once, about TuneD (file, line, remedy); not about
    # ksmtuned, which it stops and disables because ksm_tuner is none.
    first = run_role(lab, guest, ROLE_VARS)
    assert knobs(guest) == WANTED
    warnings = warnings_of(first)
    tuned = [warning for warning in warnings if warning.startswith('tuned writes')]
    assert len(tuned) == 1, warnings
    assert '%s/%s/tuned.conf:6: /sys/kernel/mm/ksm/pages_to_scan = 64' % (profiles, PROFILE) in tuned[0]
    assert 'ksm_neutralise_writers: [tuned]' in tuned[0] and 'tuned-adm profile' in tuned[0]
    assert not [warning for warning in warnings if warning.startswith('ksmtuned')], warnings
    assert unit_state(guest, 'ksmtuned.service') == ('inactive', 'disabled')
    # TuneD does overwrite them: a restart applies the profile again
    guest.ssh('systemctl restart tuned.service')
    assert knobs(guest) == {'run': '0', 'pages_to_scan': '64', 'sleep_millisecs': '1000'}

    # 2. With the option: the guard profile is appended, the knobs set after it, no warning any more.
    second = run_role(lab, guest, dict(ROLE_VARS, ksm_neutralise_writers=['tuned']))
    assert knobs(guest) == WANTED
    assert not [warning for warning in warnings_of(second) if warning.startswith('tuned writes')]
    assert guest.ssh('cat /etc/tuned/active_profile').stdout.split() == [PROFILE, 'samepage-ksm-guard']
    assert guest.ssh('tuned-adm active').stdout.split(':', 1)[1].split() == [PROFILE, 'samepage-ksm-guard']
    assert 'drop=/sys/kernel/mm/ksm/pages_to_scan,/sys/kernel/mm/ksm/sleep_millisecs,/sys/kernel/mm/ksm/run' in \
        guest.ssh('cat %s/samepage-ksm-guard/tuned.conf' % profiles).stdout

    # 3. TuneD restarted: it applies the profiles again, without their KSM settings.
    guest.ssh('systemctl restart tuned.service')
    assert knobs(guest) == WANTED

    # 4. A second run changes nothing.
    third = run_role(lab, guest, dict(ROLE_VARS, ksm_neutralise_writers=['tuned']))
    assert third.stats[guest.name]['changed'] == 0, third.output[-4000:]

    # 5. A reboot: TuneD and the boot configuration of the role both apply; the role's values stay.
    guest.reboot()
    assert guest.ssh('systemctl is-active tuned.service', check=False).stdout.strip() == 'active'
    assert knobs(guest) == WANTED
    assert unit_state(guest, 'ksmtuned.service') == ('inactive', 'disabled')
