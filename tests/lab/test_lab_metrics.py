# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""samepage.ksm.ksm_metrics with REAL systemd and Debian's prometheus-node-exporter in a Debian 13 guest (the
two-node one: its group of one-guest tests has the most room, tests/lab/conftest.py): the
four steps install the writer and its timer, the timer refreshes the file on its own, node_exporter (the
image's package, its service running with Debian's textfile directory) serves it, scraped in the guest with
curl over SSH and compared with ksm_info; then the role's task file (roles/ksm/tasks/metrics.yml, one module
execution) removes it all with ksm_metrics_enabled false.

    flock /tmp/samepage-dev-lab-slot.lock /var/cache/samepage-ksm/venv/controller-2.21/bin/python -m pytest \
        -p no:cacheprovider tests/lab/test_lab_metrics.py
"""

import json
import os
import re
import shutil
import tempfile
import time

from ansible_collections.samepage.ksm.tests.lab.labtools import four_steps, module, playbook, reset_ksm, unit_state

TIMER = 'samepage-ksm-metrics.timer'
SERVICE = 'samepage-ksm-metrics.service'
EXPORTER = 'prometheus-node-exporter.service'
DIRECTORY = '/var/lib/prometheus/node-exporter'      # Debian's textfile directory, the module's default
OUTPUT = DIRECTORY + '/samepage_ksm.prom'
INTERVAL = 10
WAIT_SECONDS = 180                                  # TCG guests are slow: a 10 s timer and a Python start

_SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)\Z')


def samples(text, prefix):
    found = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1).startswith(prefix):
            found[(match.group(1), match.group(2) or '')] = float(match.group(3))
    return found


def mtime(guest):
    result = guest.ssh('stat -c %%Y %s' % OUTPUT, check=False)
    return int(result.stdout) if result.returncode == 0 else None


def wait(what, predicate, timeout=WAIT_SECONDS):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError('timed out after %d s waiting for %s' % (timeout, what))
        time.sleep(2)


def role_metrics(lab, guest, enabled):
    """The role's metrics task file alone (include_role tasks_from: metrics), as the role runs it."""
    directory = tempfile.mkdtemp(prefix='samepage-metrics-')
    try:
        path = os.path.join(directory, 'metrics.yml')
        with open(path, 'w') as handle:
            json.dump([{'name': 'KSM metrics through the role', 'hosts': guest.name, 'gather_facts': False,
                        'become': True, 'tasks': [{
                            'name': 'The metrics task file of samepage.ksm.ksm',
                            'ansible.builtin.include_role': {'name': 'samepage.ksm.ksm', 'tasks_from': 'metrics'},
                            'vars': {'ksm_metrics_enabled': enabled, 'ksm_metrics_interval': INTERVAL}}]}], handle)
        return playbook(lab, path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_timer_node_exporter_and_ksm_info_agree(lab, numa_guest):
    guest = numa_guest
    assert guest.ssh('command -v prometheus-node-exporter curl', check=False).returncode == 0, (
        'the lab image lacks prometheus-node-exporter or curl (lab/samepage_lab/images.py PACKAGES)')
    guest.ssh('systemctl start %s' % EXPORTER)
    reset_ksm(guest)             # ksmtuned stopped, run=0: nothing changes the knobs or the counters meanwhile
    guest.ssh('rm -f %s' % OUTPUT)
    try:
        check_install_scrape_and_removal(lab, guest)
    finally:
        # the guest as found, whatever failed: no writer, no timer, no file (nothing to do when the role removed it)
        module(lab, guest, 'samepage.ksm.ksm_metrics', {'state': 'absent'})


def check_install_scrape_and_removal(lab, guest):
    """Install (four steps), the timer refreshing, node_exporter serving, ksm_info agreeing; the role removing."""
    results = four_steps(lab, guest, 'samepage.ksm.ksm_metrics', {'interval': INTERVAL})
    applied = results[1]
    assert applied['actions'] == ['daemon-reload', 'enable %s' % TIMER, 'start %s' % TIMER,
                                  'start %s' % SERVICE], applied.get('actions')
    assert applied['status']['after']['active_state'] == 'active'
    assert unit_state(guest, TIMER) == ('active', 'enabled')
    assert 'OnUnitActiveSec=%ds' % INTERVAL in guest.ssh('systemctl cat %s' % TIMER).stdout

    # the service ran once for the module; the timer refreshes the file on its own afterwards
    first = mtime(guest)
    assert first is not None, 'the module ran the service, but %s is not there' % OUTPUT
    assert guest.ssh('stat -c %%a %s' % OUTPUT).stdout.strip() == '644'
    wait('the timer to refresh %s' % OUTPUT, lambda: (mtime(guest) or 0) > first)
    assert guest.ssh('systemctl show -p Result --value %s' % SERVICE).stdout.strip() == 'success'

    info = module(lab, guest, 'samepage.ksm.ksm_info', {'max_processes': 100000})
    assert not info['failed'], info.get('msg')
    scraped = guest.ssh('curl -sf http://127.0.0.1:9100/metrics').stdout
    after = module(lab, guest, 'samepage.ksm.ksm_info', {'max_processes': 0})
    served = samples(scraped, 'samepage_ksm_')
    assert samples(scraped, 'node_textfile_scrape_error')[('node_textfile_scrape_error', '')] == 0
    # node_exporter read our file: its mtime sample names it (by base name in older node_exporters, by full path
    # in Debian 13's 1.9)
    served_files = [labels for name, labels in samples(scraped, 'node_textfile_mtime')
                    if name == 'node_textfile_mtime_seconds']
    assert served_files in (['file="samepage_ksm.prom"'], ['file="%s"' % OUTPUT]), served_files

    def one(name, labels=''):
        return served[(name, labels)]

    assert one('samepage_ksm_available') == 1 and one('samepage_ksm_snapshot_success') == 1
    # nothing writes the knobs and ksmd is stopped: knobs and counters are what ksm_info read
    assert info['settings'] == after['settings'] and info['counters'] == after['counters']
    assert one('samepage_ksm_run') == info['settings']['run'] == 0
    assert one('samepage_ksm_pages_to_scan') == info['settings']['pages_to_scan']
    assert one('samepage_ksm_sleep_seconds') == info['settings']['sleep_millisecs'] / 1000.0
    assert one('samepage_ksm_max_page_sharing') == info['settings']['max_page_sharing']
    assert one('samepage_ksm_advisor_mode', 'mode="%s"' % info['settings']['advisor_mode']) == 1
    for name in ('pages_shared', 'pages_sharing', 'pages_unshared'):
        assert one('samepage_ksm_' + name) == info['counters'][name], name
    assert one('samepage_ksm_full_scans_total') == info['counters']['full_scans']
    assert one('samepage_ksm_general_profit_bytes') == info['counters']['general_profit']
    assert one('samepage_ksm_saved_bytes') == info['savings']['bytes_saved']
    assert one('samepage_ksm_page_size_bytes') == info['capabilities']['page_size']
    # ksmd's CPU: a counter, at most what ksm_info read after the scrape
    assert 0 <= one('samepage_ksm_ksmd_cpu_seconds_total') <= after['ksmd']['cpu_seconds']
    # the headroom: what an unmerge needs and the margin cannot move; the budget follows MemAvailable
    assert one('samepage_ksm_unmerge_needed_bytes') == info['unmerge_headroom']['needed_bytes']
    assert one('samepage_ksm_unmerge_margin_bytes') == info['unmerge_headroom']['margin_bytes']
    assert one('samepage_ksm_unmerge_headroom_bytes') == \
        one('samepage_ksm_unmerge_budget_bytes') - one('samepage_ksm_unmerge_needed_bytes')
    writers = sorted(labels for name, labels in served if name == 'samepage_ksm_competing_writer')
    assert writers == sorted('writer="%s"' % writer['name'] for writer in info['competing_writers']
                             if not writer['ours'])

    # the role, ksm_metrics_enabled false: one module execution removes the writer, its units and its file
    removed = role_metrics(lab, guest, False)
    assert removed.rc == 0, removed.output[-3000:]
    assert removed.stats[guest.name]['changed'] == 1, removed.output[-3000:]
    again = role_metrics(lab, guest, False)
    assert again.rc == 0 and again.stats[guest.name]['changed'] == 0, again.output[-3000:]
    assert unit_state(guest, TIMER)[0] == 'inactive'
    assert guest.ssh('systemctl show -p LoadState --value %s' % TIMER).stdout.strip() == 'not-found'
    assert guest.ssh('test -e %s || test -e /usr/lib/samepage-ksm/metrics' % OUTPUT, check=False).returncode != 0
    assert guest.ssh('test -d %s' % DIRECTORY, check=False).returncode == 0     # node_exporter's directory stays
    scraped = guest.ssh('curl -sf http://127.0.0.1:9100/metrics').stdout
    assert 'samepage_ksm_' not in scraped
