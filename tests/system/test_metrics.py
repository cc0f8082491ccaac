# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The KSM metrics of this machine's real kernel: the program samepage-ksm-metrics installed under tmp_path as
samepage.ksm.ksm_metrics installs it and run as its unit runs it, the file validated by promtool (Debian's
prometheus package), served by Debian's prometheus-node-exporter (started here as a process, its textfile
collector only), scraped over HTTP and compared with ksm_info's figures. PID 1 is not systemd here: the timer
is proven in the lab (tests/lab/test_lab_metrics.py)."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm, _ksm_metrics, _program
from ansible_collections.samepage.ksm.plugins.modules import ksm_metrics
from ansible_collections.samepage.ksm.tests.support.ansible_cli import run_module
from ansible_collections.samepage.ksm.tests.support.host_packages import end_process, require, which
from ansible_collections.samepage.ksm.tests.support.merge_workload import MergeableWorkload

pytestmark = pytest.mark.skipif(not os.path.isdir(_ksm.KSM_DIR), reason='this kernel has no KSM')

PROGRAMS = {'promtool': 'prometheus', 'prometheus-node-exporter': 'prometheus-node-exporter'}
WORKLOAD_MIB = 32
MIN_SHARING = 1000
ALL = 100000                 # max_processes that lists every process
MIB = 1024 * 1024
# MemAvailable moves between two readings (other processes, the lab's guests): the unmerge budget of the
# file is bounded by ksm_info's budgets read before and after it, widened by this much.
BUDGET_SLACK = 512 * MIB

_SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)\Z')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def samples(text, prefix='samepage_ksm_'):
    """{(name, ((label, value), ...)): float} of the samples of text whose name starts with prefix."""
    found = {}
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        match = _SAMPLE.match(line)
        assert match, line
        name, labels, value = match.groups()
        if not name.startswith(prefix):
            continue
        pairs = tuple((label, re.sub(r'\\(.)', lambda m: {'n': '\n'}.get(m.group(1), m.group(1)), raw))
                      for label, raw in _LABEL.findall(labels or ''))
        found[(name, tuple(sorted(pairs)))] = float(value)
    return found


@pytest.fixture(scope='module')
def tools():
    reason = require(PROGRAMS)
    if reason:
        pytest.skip(reason)
    return {name: which(name) for name in PROGRAMS}


@pytest.fixture
def program(tmp_path):
    """The metrics program installed under tmp_path as ksm_metrics installs it; returns the command its unit runs."""
    program_dir = str(tmp_path / 'program')
    for path, text in ksm_metrics.program_files(_program.read_sources(_ksm_metrics.SOURCES), program_dir).items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as handle:
            handle.write(text)
    return [sys.executable, '-I', os.path.join(program_dir, _ksm_metrics.ENTRY)]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class NodeExporter:
    """Debian's prometheus-node-exporter with only its textfile collector, on a free loopback port."""

    def __init__(self, binary, directory, log):
        self.port = free_port()
        self.url = 'http://127.0.0.1:%d/metrics' % self.port
        self.process = subprocess.Popen(
            [binary, '--collector.disable-defaults', '--collector.textfile',
             '--collector.textfile.directory=%s' % directory, '--web.listen-address=127.0.0.1:%d' % self.port],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def scrape(self, timeout=60):
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url, timeout=10) as answer:
                    return answer.read().decode('utf-8')
            except OSError:
                if self.process.poll() is not None or time.time() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self):
        end_process(self.process)


def write_metrics(program, directory, margin='5%'):
    output = os.path.join(str(directory), _ksm_metrics.FILE_NAME)
    done = subprocess.run(program + ['--output', output, '--memory-margin', margin], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    with open(output) as handle:
        return handle.read()


def test_promtool_accepts_the_file_of_the_real_kernel(tools, program, tmp_path):
    text = write_metrics(program, tmp_path)
    checked = subprocess.run([tools['promtool'], 'check', 'metrics'], input=text.encode('utf-8'),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False)
    assert checked.returncode == 0 and checked.stdout == b'', checked.stdout.decode('utf-8', 'replace')
    assert oct(os.stat(str(tmp_path / _ksm_metrics.FILE_NAME)).st_mode & 0o777) == oct(0o644)
    assert sorted(os.listdir(str(tmp_path))) == ['program', _ksm_metrics.FILE_NAME]    # no temporary file left
    names = set(name for name, dummy in samples(text))
    for name in os.listdir(_ksm.KSM_DIR):
        knob = _ksm.CATALOGUE.get(name)
        metric = 'samepage_ksm_' + name if knob is not None and knob.kind == _ksm.CHOICE else \
            _ksm_metrics.metric_name(name, knob)[0]
        assert metric in names, (name, metric)
    assert 'samepage_ksm_ksmd_cpu_seconds_total' in names     # ksmd is a kernel thread in /proc here


def test_node_exporter_serves_what_ksm_info_reports(tools, program, tmp_path, ksm_host):
    textfiles = tmp_path / 'textfile'
    textfiles.mkdir()
    ksm_host.set(run=1, pages_to_scan=5000)
    with MergeableWorkload(mib=WORKLOAD_MIB) as workload, open(str(tmp_path / 'node-exporter.log'), 'w') as log:
        workload.wait_for_sharing(MIN_SHARING, timeout=180)
        ksm_host.set(run=0)          # ksmd stopped, pages kept merged: the counters stand still from here
        for dummy in range(3):
            # ... unless a process with mergeable memory exits meanwhile (its rmap items go): read again
            before = run_module('samepage.ksm.ksm_info', {'max_processes': ALL})
            text = write_metrics(program, textfiles)
            after = run_module('samepage.ksm.ksm_info', {'max_processes': ALL})
            if before.get('counters') == after.get('counters'):
                break
        exporter = NodeExporter(tools['prometheus-node-exporter'], str(textfiles), log)
        try:
            scraped = exporter.scrape()
        finally:
            exporter.stop()
        workload_pid = workload.pid
    assert before['failed'] is False and after['failed'] is False, before.output
    served = samples(scraped)
    assert samples(scraped, 'node_textfile_scrape_error')[('node_textfile_scrape_error', ())] == 0, scraped
    # node_exporter serves the file as it is: every sample, the same value
    assert served == samples(text)

    def one(name, **labels):
        return served[(name, tuple(sorted(labels.items())))]

    # what cannot move while ksmd is stopped: the knobs, the counters, the savings, exactly
    assert before['settings'] == after['settings'] and before['counters'] == after['counters']
    for name, value in list(before['settings'].items()) + list(before['counters'].items()):
        knob = _ksm.CATALOGUE.get(name)
        if knob is not None and knob.kind == _ksm.CHOICE:
            assert one('samepage_ksm_' + name, mode=value) == 1, name
            continue
        metric, dummy, divisor = _ksm_metrics.metric_name(name, knob)
        assert one(metric) == float(value) / divisor, name
    assert one('samepage_ksm_pages_sharing') >= MIN_SHARING
    assert one('samepage_ksm_saved_bytes') == before['savings']['bytes_saved'] > 0
    assert one('samepage_ksm_page_size_bytes') == before['capabilities']['page_size']
    assert one('samepage_ksm_available') == 1 and one('samepage_ksm_snapshot_success') == 1
    # ksmd's CPU is a counter: between the two readings around the file
    assert before['ksmd']['pid'] == after['ksmd']['pid']
    assert before['ksmd']['cpu_seconds'] <= one('samepage_ksm_ksmd_cpu_seconds_total') <= after['ksmd']['cpu_seconds']
    # the unmerge headroom: what it needs and the margin cannot move; the budget follows MemAvailable
    headroom = before['unmerge_headroom']
    assert one('samepage_ksm_unmerge_needed_bytes') == headroom['needed_bytes'] == after['unmerge_headroom']['needed_bytes']
    assert one('samepage_ksm_unmerge_margin_bytes') == headroom['margin_bytes']
    budgets = (headroom['budget_bytes'], after['unmerge_headroom']['budget_bytes'])
    assert min(budgets) - BUDGET_SLACK <= one('samepage_ksm_unmerge_budget_bytes') <= max(budgets) + BUDGET_SLACK
    assert one('samepage_ksm_unmerge_headroom_bytes') == \
        one('samepage_ksm_unmerge_budget_bytes') - one('samepage_ksm_unmerge_needed_bytes')
    # the guests (QEMU processes on this machine, e.g. the lab's) and the other writers, as ksm_info lists them
    guests = dict((key[1][0][1], value) for key, value in served.items() if key[0] == 'samepage_ksm_guest_merging_pages')
    named = {}
    for guest in before['guests']:
        named[guest['name'] or ''] = named.get(guest['name'] or '', 0) + guest['merging_pages']
    assert sorted(guests) == sorted(named) or sorted(guests) == sorted(
        set(guest['name'] or '' for guest in after['guests']))
    writers = sorted(key[1][0][1] for key in served if key[0] == 'samepage_ksm_competing_writer')
    assert writers == sorted(writer['name'] for writer in before['competing_writers'] if not writer['ours'])
    assert one('samepage_ksm_competing_writers') == len(writers)
    assert any(row['pid'] == workload_pid for row in before['processes'])
