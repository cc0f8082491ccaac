# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The fleet report (playbooks/report.yml), looked at as a person would: rendered by headless Chromium.

The fleet is this machine three times over: `localhost` reads the real KSM while a workload of duplicate
pages is merged, `unreachable-host` is an SSH port nobody listens on, and `host-without-ksm` runs the
module in a mount namespace of its own where /sys/kernel/mm is an empty tmpfs (what a kernel without
CONFIG_KSM shows ksm_info). The page Chromium renders must name every host with ksm_info's figures and
the two others as hosts that could not be read, never with zeros.

SAMEPAGE_REPORT_SCREENSHOT=PATH copies the screenshot there (docs/images/report.png is made that way).
"""

import csv
import html.parser
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

import pytest

from ansible_collections.samepage.ksm.plugins.filter.ksm_fleet_report import exact_bytes, human_bytes
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm
from ansible_collections.samepage.ksm.tests.support.ansible_cli import REPO, ansible_bin, run_playbook
from ansible_collections.samepage.ksm.tests.support.merge_workload import MergeableWorkload

pytestmark = pytest.mark.skipif(not os.path.isdir(_ksm.KSM_DIR), reason='this kernel has no KSM')

PLAYBOOK = os.path.join(REPO, 'playbooks', 'report.yml')
READ_TASK = 'Read KSM on every host'
WORKLOAD_MIB = 32
MIN_SHARING = 1000   # of the 8192 pages of the workload
WINDOW = (1400, 1640)
CHROMIUM_TIMEOUT = 180
# A byte figure as the report writes one ("0 B", "31.8 MiB"): none may stand next to a host that was not read.
BYTE_FIGURE = re.compile(r'-?\d+(\.\d)? (B|KiB|MiB|GiB|TiB|PiB)\b')

# Python in a private mount namespace with an empty, read-only /sys/kernel/mm: no KSM to be seen there.
NO_KSM_INTERPRETER = '''#!/bin/sh
exec unshare --mount --propagation private /bin/sh -c \\
    'mount -t tmpfs -o ro,size=4k samepage-no-ksm /sys/kernel/mm && exec "$0" "$@"' %s "$@"
'''


def chromium():
    for name in ('chromium', 'chromium-browser'):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip('chromium is not installed (tools/ci.sh system installs Debian\'s chromium package)')
    return None


def render(page, png):
    """(DOM text after Chromium rendered `page`, its screenshot at `png`): headless, nothing fetched."""
    common = [chromium(), '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
              '--disable-background-networking', '--disable-component-update', '--disable-sync',
              '--hide-scrollbars', '--window-size=%d,%d' % WINDOW]
    outputs = []
    for action in ('--screenshot=%s' % png, '--dump-dom'):
        profile = tempfile.mkdtemp(prefix='samepage-chromium-')
        try:
            process = subprocess.run(common + ['--user-data-dir=%s' % profile, action, 'file://%s' % page],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=CHROMIUM_TIMEOUT,
                                     check=False)
        finally:
            shutil.rmtree(profile, ignore_errors=True)
        assert process.returncode == 0, process.stderr.decode('utf-8', 'replace')[-3000:]
        outputs.append(process.stdout.decode('utf-8'))
    return outputs[1]


VOID_ELEMENTS = ('area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'source', 'track', 'wbr')


class Rows(html.parser.HTMLParser):
    """Text of every element that carries one of the given data-* attributes, by attribute value."""

    def __init__(self, attribute):
        super().__init__()
        self.attribute = attribute
        self.found = {}
        self.attributes = {}
        self._open = []   # [(tag, key or None)]

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        key = attrs.get(self.attribute)
        if key is not None:
            self.found[key] = ''
            self.attributes[key] = attrs
        if tag not in VOID_ELEMENTS:
            self._open.append((tag, key))

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if tag not in [opened for opened, _key in self._open]:
            return   # an end tag without its start (HTML tolerates them): nothing to close
        while self._open:
            opened, _key = self._open.pop()
            if opened == tag:
                break

    def handle_data(self, data):
        for _tag, key in self._open:
            if key is not None:
                self.found[key] += data


def elements(dom, attribute):
    parser = Rows(attribute)
    parser.feed(dom)
    texts = {key: ' '.join(text.split()) for key, text in parser.found.items()}
    return texts, parser.attributes


def png_size(path):
    with open(path, 'rb') as handle:
        head = handle.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG: %r' % head[:8]
    return struct.unpack('>II', head[16:24])


def write_inventory(directory):
    no_ksm = os.path.join(directory, 'python-without-ksm')
    with open(no_ksm, 'w', encoding='utf-8') as handle:
        handle.write(NO_KSM_INTERPRETER % sys.executable)
    os.chmod(no_ksm, 0o755)
    path = os.path.join(directory, 'hosts.ini')
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(
            '[dense]\n'
            'localhost ansible_connection=local ansible_python_interpreter=%s\n'
            '[balanced]\n'
            'unreachable-host ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh ansible_user=root '
            'ansible_ssh_timeout=10\n'
            '[legacy]\n'
            'host-without-ksm ansible_connection=local ansible_python_interpreter=%s\n'
            '[kvm_hosts:children]\n'
            'dense\n'
            'balanced\n'
            'legacy\n' % (sys.executable, no_ksm))
    return path


@pytest.mark.every_controller
def test_the_rendered_report_names_every_host_with_its_figures(tmp_path, ksm_host):
    ksm_host.set(run=1, pages_to_scan=5000)
    inventory = write_inventory(str(tmp_path))
    out = tmp_path / 'report'
    with MergeableWorkload(mib=WORKLOAD_MIB) as workload:
        workload.wait_for_sharing(MIN_SHARING, timeout=180)
        run = run_playbook(PLAYBOOK, inventory=inventory, extra_vars={'ksm_report_dir': str(out)})
        live = ksm_host.state()
    assert run.rc == 0, run.output
    assert set(run.stats) == {'localhost', 'unreachable-host', 'host-without-ksm'}, run.stats
    info = run.results_for(READ_TASK, host='localhost')[0]['result']
    assert info['available'] is True and info['settings']['run'] == 1
    saved = info['savings']['bytes_saved']
    assert saved >= MIN_SHARING * info['capabilities']['page_size']
    no_ksm = run.results_for(READ_TASK, host='host-without-ksm')[0]['result']
    assert no_ksm['available'] is False and 'no KSM' in no_ksm['msg']
    assert os.path.isdir(_ksm.KSM_DIR) and 'pages_sharing' in live   # the namespace hid KSM from that host only

    page = out / 'report.html'
    source = page.read_text()
    # Self-contained: nothing to fetch, nothing to run.
    assert not re.search(r'<(script|link|img|iframe)\b', source, re.I), 'the page loads or runs something'
    assert not re.search(r'\b(src|href)\s*=|url\(|@import', source, re.I), 'the page refers to something outside'

    png = tmp_path / 'report.png'
    dom = render(str(page), str(png))
    assert png_size(str(png)) == WINDOW
    target = os.environ.get('SAMEPAGE_REPORT_SCREENSHOT')
    if target:
        shutil.copyfile(str(png), target)

    rows, attributes = elements(dom, 'data-host')
    assert set(rows) == {'localhost', 'unreachable-host', 'host-without-ksm'}

    local = rows['localhost']
    assert attributes['localhost']['data-status'] == 'ok'
    assert human_bytes(saved) in local and exact_bytes(saved) in local, local
    if 'general_profit' in info['savings']:
        assert human_bytes(info['savings']['general_profit']) in local, local
    unmerge = (info['counters']['pages_sharing'] + info['counters'].get('ksm_zero_pages', 0)) \
        * info['capabilities']['page_size']
    assert '%s / n/a' % human_bytes(unmerge) in local, local
    for knob in ('run', 'pages_to_scan', 'sleep_millisecs'):
        assert '%s %s' % (knob, info['settings'][knob]) in local, (knob, local)
    assert ('%.2f' % info['savings']['sharing_ratio']) in local

    gone = rows['unreachable-host']
    assert attributes['unreachable-host']['data-status'] == 'unreachable'
    assert 'unreachable' in gone and 'Not read: no figures.' in gone and 'port 1' in gone, gone
    assert not BYTE_FIGURE.search(gone), gone

    missing = rows['host-without-ksm']
    assert attributes['host-without-ksm']['data-status'] == 'ksm_missing'
    assert 'KSM missing' in missing and ' '.join(no_ksm['msg'].split()) in missing, missing
    assert not BYTE_FIGURE.search(missing), missing

    cards, _attrs = elements(dom, 'id')
    assert cards['fleet-read'] == '1 of 3'
    assert cards['fleet-saved'] == human_bytes(saved)

    groups, _attrs = elements(dom, 'data-group')
    assert human_bytes(saved) in groups['dense'] and groups['dense'].split()[:3] == ['dense', '1', '1']
    assert groups['balanced'].split()[:3] == ['balanced', '1', '0'] and 'unreachable' in groups['balanced']
    assert not BYTE_FIGURE.search(groups['balanced']), groups['balanced']
    assert groups['legacy'].split()[:3] == ['legacy', '1', '0'] and 'KSM missing' in groups['legacy']
    assert groups['kvm_hosts'].split()[:3] == ['kvm_hosts', '3', '1'] and human_bytes(saved) in groups['kvm_hosts']

    processes, _attrs = elements(dom, 'data-processes-of')
    assert set(processes) == {'localhost'}
    top = [row for row in info['processes'] if row['pid'] == workload.pid]
    assert top and str(workload.pid) in processes['localhost'] and human_bytes(top[0]['merging_bytes']) in processes['localhost']
    not_paying, _attrs = elements(dom, 'data-not-paying-of')
    assert set(not_paying) == {'localhost'}

    with open(str(out / 'report.csv'), encoding='utf-8') as handle:
        table = {row['host']: row for row in csv.DictReader(handle)}
    assert set(table) == {'localhost', 'unreachable-host', 'host-without-ksm'}
    assert table['localhost']['status'] == 'ok' and table['localhost']['saved_bytes'] == str(saved)
    assert table['localhost']['run'] == '1' and table['localhost']['pages_to_scan'] == '5000'
    assert table['unreachable-host']['status'] == 'unreachable' and table['unreachable-host']['saved_bytes'] == 'n/a'
    assert 'port 1' in table['unreachable-host']['message']
    assert table['host-without-ksm']['status'] == 'ksm_missing' and table['host-without-ksm']['saved_bytes'] == 'n/a'

    text = (out / 'report.txt').read_text()
    assert text.startswith('KSM fleet report: 3 host(s), 1 read, 2 could not be read\n')
    line = {line.split()[0]: line for line in text.splitlines() if line.startswith('  ') and line.split()}
    assert human_bytes(saved) in line['localhost'] and '1/5000/' in line['localhost']
    assert line['unreachable-host'].split()[1] == 'UNREACHABLE' and not BYTE_FIGURE.search(line['unreachable-host'])
    assert line['host-without-ksm'].split()[1:3] == ['KSM', 'MISSING']
    assert 'Report: %s/report.html' % out in run.output


@pytest.mark.every_controller
def test_the_collection_playbook_writes_into_the_current_directory(tmp_path):
    """`ansible-playbook samepage.ksm.report` finds the playbook in the collection; ksm-report/ is in the cwd."""
    inventory = tmp_path / 'hosts.ini'
    inventory.write_text('localhost ansible_connection=local ansible_python_interpreter=%s\n' % sys.executable)
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_HOST_KEY_CHECKING='0')
    process = subprocess.run([ansible_bin('ansible-playbook'), 'samepage.ksm.report', '-i', str(inventory),
                              '-e', 'ksm_report_max_processes=0'],
                             cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             timeout=600, check=False)
    output = process.stdout.decode('utf-8', 'replace')
    assert process.returncode == 0, output
    out = tmp_path / 'ksm-report'
    assert sorted(os.listdir(str(out))) == ['report.csv', 'report.html', 'report.txt']
    assert 'Report: %s/report.html' % out in output
    assert 'data-host="localhost" data-status="ok"' in (out / 'report.html').read_text()


@pytest.mark.every_controller
def test_ci_can_fail_the_run_on_hosts_that_cannot_be_read_once_the_report_is_written(tmp_path):
    inventory = tmp_path / 'hosts.ini'
    inventory.write_text('localhost ansible_connection=local ansible_python_interpreter=%s\n'
                         'unreachable-host ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh ansible_user=root '
                         'ansible_ssh_timeout=10\n' % sys.executable)
    out = tmp_path / 'report'
    quiet = run_playbook(PLAYBOOK, inventory=str(inventory),
                         extra_vars={'ksm_report_dir': str(out), 'ksm_report_max_processes': 0})
    assert quiet.rc == 0, quiet.output
    strict = run_playbook(PLAYBOOK, inventory=str(inventory),
                          extra_vars={'ksm_report_dir': str(out), 'ksm_report_max_processes': 0,
                                      'ksm_report_fail_on_unreadable': True})
    assert strict.rc != 0
    failed = strict.results_for('Fail when a host could not be read')
    assert [item['status'] for item in failed] == ['failed'], strict.output
    assert '1 of 2 host(s) could not be read: unreachable-host' in failed[0]['result']['msg']
    assert sorted(os.listdir(str(out))) == ['report.csv', 'report.html', 'report.txt']
    assert 'data-host="unreachable-host" data-status="unreachable"' in (out / 'report.html').read_text()
