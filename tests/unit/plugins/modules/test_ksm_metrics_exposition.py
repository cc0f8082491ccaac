# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Prometheus exposition of a KSM snapshot (_ksm_metrics): the exact text of a fake snapshot, the naming
conventions for every file of every kernel generation, escaping, the atomic write, the units, and the program
against the fake host. promtool and node_exporter check the real thing: tests/system/test_metrics.py.

Beside the module tests, not the module_utils ones: it drives ksm_info and the fake host, which need
ansible, and the target-Python runs (3.8, 3.9: no ansible) cover tests/unit/plugins/module_utils only."""

import os
import re
import stat

import pytest

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm, _ksm_metrics, _ksm_tuner
from ansible_collections.samepage.ksm.plugins.modules import ksm_info
from ansible_collections.samepage.ksm.tests.unit.fakes.kernel import PRESETS
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.fake_host import FakeHost
from ansible_collections.samepage.ksm.tests.unit.plugins.modules.module_runner import run_main

SNAPSHOT = {
    'available': True,
    'capabilities': {'page_size': 4096},
    'settings': {'run': 1, 'pages_to_scan': 100, 'sleep_millisecs': 20, 'advisor_mode': 'scan-time',
                 'advisor_max_cpu': 70, 'use_zero_pages': True, 'max_page_sharing': 256},
    'counters': {'pages_shared': 10, 'pages_sharing': 150, 'full_scans': 3, 'general_profit': -4096,
                 'ksm_zero_pages': 2, 'some_future_counter': 7, 'some_future_text': 'a b'},
    'savings': {'bytes_saved': 614400, 'zero_pages_bytes': 8192, 'general_profit': -4096, 'sharing_ratio': 15.0},
    'ksmd': {'pid': 37, 'cpu_seconds': 12.5, 'source': '/proc/37/stat'},
    'unmerge_headroom': {'needed_bytes': 622592, 'mem_available_bytes': 1000000, 'swap_free_bytes': 0,
                         'memory_margin': '5%', 'margin_bytes': 50000, 'budget_bytes': 950000,
                         'headroom_bytes': 327408, 'fits': True},
    'tuner': {'installed': True, 'running': True, 'phase': 'idle', 'run': 1, 'pages_to_scan': 100,
              'sleep_millisecs': 200, 'updated': '2026-11-30T21:45:12Z'},
    'process_scan': {'complete': True},
    'guests': [{'name': 'web"01\\x', 'merging_pages': 100}, {'name': None, 'merging_pages': 5},
               {'name': None, 'merging_pages': 7}, {'name': 'db\n', 'merging_pages': 0}],
    'competing_writers': [{'name': 'ksmtuned', 'ours': False}, {'name': 'samepage-ksm-tuner', 'ours': True}],
}

EXPECTED = r'''# HELP samepage_ksm_snapshot_success Whether the last snapshot of KSM was read completely (0: see the journal of samepage-ksm-metrics.service).
# TYPE samepage_ksm_snapshot_success gauge
samepage_ksm_snapshot_success 1
# HELP samepage_ksm_snapshot_duration_seconds How long the last snapshot of KSM took to read.
# TYPE samepage_ksm_snapshot_duration_seconds gauge
samepage_ksm_snapshot_duration_seconds 0.25
# HELP samepage_ksm_available Whether this kernel has KSM (/sys/kernel/mm/ksm exists).
# TYPE samepage_ksm_available gauge
samepage_ksm_available 1
# HELP samepage_ksm_page_size_bytes Page size: the unit of the page counts.
# TYPE samepage_ksm_page_size_bytes gauge
samepage_ksm_page_size_bytes 4096
# HELP samepage_ksm_advisor_max_cpu_ratio CPU budget of ksmd for the scan-time advisor (/sys/kernel/mm/ksm/advisor_max_cpu, there in percent of one CPU).
# TYPE samepage_ksm_advisor_max_cpu_ratio gauge
samepage_ksm_advisor_max_cpu_ratio 0.7
<ADVISOR_MODE_HELP>
# TYPE samepage_ksm_advisor_mode gauge
samepage_ksm_advisor_mode{mode="none"} 0
samepage_ksm_advisor_mode{mode="scan-time"} 1
# HELP samepage_ksm_pages_to_scan Pages ksmd scans per batch (/sys/kernel/mm/ksm/pages_to_scan).
# TYPE samepage_ksm_pages_to_scan gauge
samepage_ksm_pages_to_scan 100
# HELP samepage_ksm_sleep_seconds Pause of ksmd between batches (/sys/kernel/mm/ksm/sleep_millisecs, there in milliseconds).
# TYPE samepage_ksm_sleep_seconds gauge
samepage_ksm_sleep_seconds 0.02
# HELP samepage_ksm_use_zero_pages Merge empty pages into the kernel zero page (affects future merges only) (/sys/kernel/mm/ksm/use_zero_pages).
# TYPE samepage_ksm_use_zero_pages gauge
samepage_ksm_use_zero_pages 1
# HELP samepage_ksm_max_page_sharing Maximum sharers of one KSM page (/sys/kernel/mm/ksm/max_page_sharing).
# TYPE samepage_ksm_max_page_sharing gauge
samepage_ksm_max_page_sharing 256
# HELP samepage_ksm_run 0: ksmd stopped, merged pages kept; 1: ksmd scans; 2: stop and unmerge every page (/sys/kernel/mm/ksm/run).
# TYPE samepage_ksm_run gauge
samepage_ksm_run 1
# HELP samepage_ksm_pages_shared KSM pages in use (/sys/kernel/mm/ksm/pages_shared).
# TYPE samepage_ksm_pages_shared gauge
samepage_ksm_pages_shared 10
# HELP samepage_ksm_pages_sharing Further mappings of those pages: about the pages saved (/sys/kernel/mm/ksm/pages_sharing).
# TYPE samepage_ksm_pages_sharing gauge
samepage_ksm_pages_sharing 150
# HELP samepage_ksm_full_scans_total Completed full scans (reset by run=2) (/sys/kernel/mm/ksm/full_scans).
# TYPE samepage_ksm_full_scans_total counter
samepage_ksm_full_scans_total 3
# HELP samepage_ksm_general_profit_bytes Bytes saved minus the metadata KSM spends (may be negative) (/sys/kernel/mm/ksm/general_profit).
# TYPE samepage_ksm_general_profit_bytes gauge
samepage_ksm_general_profit_bytes -4096
# HELP samepage_ksm_zero_pages Empty pages merged into the kernel zero page (use_zero_pages) (/sys/kernel/mm/ksm/ksm_zero_pages).
# TYPE samepage_ksm_zero_pages gauge
samepage_ksm_zero_pages 2
# HELP samepage_ksm_some_future_counter A file this collection does not know (/sys/kernel/mm/ksm/some_future_counter).
# TYPE samepage_ksm_some_future_counter gauge
samepage_ksm_some_future_counter 7
# HELP samepage_ksm_saved_bytes Memory KSM saves: pages_sharing times the page size.
# TYPE samepage_ksm_saved_bytes gauge
samepage_ksm_saved_bytes 614400
# HELP samepage_ksm_zero_pages_bytes Memory of empty pages merged into the kernel zero page: ksm_zero_pages times the page size.
# TYPE samepage_ksm_zero_pages_bytes gauge
samepage_ksm_zero_pages_bytes 8192
# HELP samepage_ksm_ksmd_cpu_seconds_total CPU ksmd has used since boot (utime + stime of /proc/<ksmd pid>/stat).
# TYPE samepage_ksm_ksmd_cpu_seconds_total counter
samepage_ksm_ksmd_cpu_seconds_total 12.5
# HELP samepage_ksm_unmerge_needed_bytes Memory an unmerge (run=2) would allocate now: (pages_sharing + ksm_zero_pages) times the page size.
# TYPE samepage_ksm_unmerge_needed_bytes gauge
samepage_ksm_unmerge_needed_bytes 622592
# HELP samepage_ksm_unmerge_budget_bytes Memory an unmerge may use: MemAvailable + SwapFree - the safety margin (5%).
# TYPE samepage_ksm_unmerge_budget_bytes gauge
samepage_ksm_unmerge_budget_bytes 950000
# HELP samepage_ksm_unmerge_headroom_bytes Budget minus what an unmerge needs; below 0 samepage.ksm.ksm_unmerge refuses to unmerge.
# TYPE samepage_ksm_unmerge_headroom_bytes gauge
samepage_ksm_unmerge_headroom_bytes 327408
# HELP samepage_ksm_unmerge_margin_bytes The safety margin of the unmerge check (5%).
# TYPE samepage_ksm_unmerge_margin_bytes gauge
samepage_ksm_unmerge_margin_bytes 50000
# HELP samepage_ksm_tuner_running Whether the samepage tuner (samepage-ksm-tuner) runs: its state file names a live tuner.
# TYPE samepage_ksm_tuner_running gauge
samepage_ksm_tuner_running 1
# HELP samepage_ksm_tuner_phase The samepage tuner's phase (from its state file): 1 for the current one.
# TYPE samepage_ksm_tuner_phase gauge
samepage_ksm_tuner_phase{phase="fast"} 0
samepage_ksm_tuner_phase{phase="idle"} 1
samepage_ksm_tuner_phase{phase="throttled"} 0
samepage_ksm_tuner_phase{phase="paused"} 0
samepage_ksm_tuner_phase{phase="gated"} 0
samepage_ksm_tuner_phase{phase="stopped"} 0
samepage_ksm_tuner_phase{phase="error"} 0
samepage_ksm_tuner_phase{phase="unavailable"} 0
# HELP samepage_ksm_tuner_run The run the samepage tuner set.
# TYPE samepage_ksm_tuner_run gauge
samepage_ksm_tuner_run 1
# HELP samepage_ksm_tuner_pages_to_scan The samepage tuner's rate: pages ksmd scans per batch.
# TYPE samepage_ksm_tuner_pages_to_scan gauge
samepage_ksm_tuner_pages_to_scan 100
# HELP samepage_ksm_tuner_sleep_seconds The samepage tuner's rate: pause between batches.
# TYPE samepage_ksm_tuner_sleep_seconds gauge
samepage_ksm_tuner_sleep_seconds 0.2
# HELP samepage_ksm_tuner_state_updated_timestamp_seconds When the samepage tuner last wrote its state file (seconds since the epoch).
# TYPE samepage_ksm_tuner_state_updated_timestamp_seconds gauge
samepage_ksm_tuner_state_updated_timestamp_seconds 1796075112
# HELP samepage_ksm_process_scan_complete Whether the scan of /proc behind the guest figures read every process.
# TYPE samepage_ksm_process_scan_complete gauge
samepage_ksm_process_scan_complete 1
# HELP samepage_ksm_guest_merging_pages Pages of a QEMU guest that KSM merges now (ksm_merging_pages of its process).
# TYPE samepage_ksm_guest_merging_pages gauge
samepage_ksm_guest_merging_pages{guest=""} 12
samepage_ksm_guest_merging_pages{guest="db\n"} 0
samepage_ksm_guest_merging_pages{guest="web\"01\\x"} 100
# HELP samepage_ksm_competing_writer Another writer of KSM knobs found on the host (1 each; see ksm_info competing_writers).
# TYPE samepage_ksm_competing_writer gauge
samepage_ksm_competing_writer{writer="ksmtuned"} 1
# HELP samepage_ksm_competing_writers How many other writers of KSM knobs were found.
# TYPE samepage_ksm_competing_writers gauge
samepage_ksm_competing_writers 1
'''.replace('<ADVISOR_MODE_HELP>', (
    '# HELP samepage_ksm_advisor_mode none: pages_to_scan is set by hand; scan-time: the kernel advisor sets it '
    '(/sys/kernel/mm/ksm/advisor_mode): 1 for the mode in effect.'))


def test_exposition_of_a_snapshot_is_exact():
    assert _ksm_metrics.exposition(SNAPSHOT, success=True, duration=0.25) == EXPECTED


def test_a_host_without_ksm_says_so_and_nothing_else():
    text = _ksm_metrics.exposition({'available': False, 'capabilities': {'page_size': 4096}, 'tuner': None},
                                   duration=None)
    assert parse(text) == {('samepage_ksm_snapshot_success', ()): 1.0, ('samepage_ksm_available', ()): 0.0,
                           ('samepage_ksm_page_size_bytes', ()): 4096.0}


def test_a_failed_snapshot_keeps_what_it_read():
    text = _ksm_metrics.exposition(dict(SNAPSHOT, savings=None, ksmd=None), success=False)
    samples = parse(text)
    assert samples[('samepage_ksm_snapshot_success', ())] == 0
    assert samples[('samepage_ksm_pages_sharing', ())] == 150
    assert ('samepage_ksm_saved_bytes', ()) not in samples


def test_an_unknown_tuner_phase_is_listed_too():
    samples = parse(_ksm_metrics.exposition(dict(SNAPSHOT, tuner={'running': False, 'phase': 'warp'})))
    assert samples[('samepage_ksm_tuner_phase', (('phase', 'warp'),))] == 1
    assert samples[('samepage_ksm_tuner_phase', (('phase', 'idle'),))] == 0
    assert samples[('samepage_ksm_tuner_running', ())] == 0
    assert ('samepage_ksm_tuner_pages_to_scan', ()) not in samples


# ---------------------------------------------------------------------------------------------------
# A small reader of the exposition format, independent of the writer (promtool checks it for real)

_LINE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)\Z')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|\Z)')


def unescape(text):
    return re.sub(r'\\(.)', lambda m: {'n': '\n', '\\': '\\', '"': '"'}[m.group(1)], text)


def parse(text, families=None):
    """{(name, ((label, value), ...)): value}; families, when given, gets {name: (type, help)}."""
    samples = {}
    types = {}
    helps = {}
    assert text.endswith('\n')
    for line in text[:-1].split('\n'):
        if line.startswith('# HELP '):
            name, dummy, help_text = line[len('# HELP '):].partition(' ')
            helps[name] = unescape(help_text)
            continue
        if line.startswith('# TYPE '):
            name, kind = line[len('# TYPE '):].split(' ')
            assert name in helps, 'TYPE before HELP: %s' % name
            types[name] = kind
            continue
        match = _LINE.match(line)
        assert match, line
        name, labels, value = match.groups()
        assert name in types, 'sample before its TYPE: %s' % line
        pairs = []
        rest = labels or ''
        while rest:
            label = _LABEL.match(rest)
            assert label, line
            pairs.append((label.group(1), unescape(label.group(2))))
            rest = rest[label.end():]
        key = (name, tuple(pairs))
        assert key not in samples, 'two samples of %r' % (key,)
        samples[key] = float(value)
    if families is not None:
        families.update({name: (types[name], helps[name]) for name in types})
    return samples


def test_label_values_are_escaped_and_read_back():
    samples = parse(EXPECTED)
    assert samples[('samepage_ksm_guest_merging_pages', (('guest', 'web"01\\x'),))] == 100
    assert samples[('samepage_ksm_guest_merging_pages', (('guest', 'db\n'),))] == 0
    assert samples[('samepage_ksm_guest_merging_pages', (('guest', ''),))] == 12   # two unnamed guests, summed


def test_escaping_rules():
    assert _ksm_metrics.escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert _ksm_metrics.escape_help('a\\b"c\nd') == 'a\\\\b"c\\nd'     # quotes stay as they are in HELP


@pytest.mark.parametrize('value,text', [(0, '0'), (-4096, '-4096'), (2 ** 64 - 1, '18446744073709551615'),
                                        (True, '1'), (False, '0'), (0.25, '0.25'), (2.0, '2'), (1e300, '1e+300'),
                                        (float('nan'), 'NaN'), (float('inf'), '+Inf'), (float('-inf'), '-Inf')])
def test_sample_values(value, text):
    assert _ksm_metrics.format_value(value) == text


def test_duplicates_and_bad_names_are_refused():
    with pytest.raises(ValueError):
        _ksm_metrics.Family('samepage ksm', 'gauge', 'x')
    family = _ksm_metrics.Family('samepage_ksm_x', 'gauge', 'x').add(1, guest='a').add(2, guest='a')
    with pytest.raises(ValueError):
        _ksm_metrics.render([family])
    with pytest.raises(ValueError):
        _ksm_metrics.render([_ksm_metrics.Family('samepage_ksm_x', 'gauge', 'x').add(1, **{'__name__': 'y'})])


# ---------------------------------------------------------------------------------------------------
# Names follow Prometheus' conventions, for every file of every kernel generation

UNIT_WORDS = ('millisecs', 'milliseconds', 'msecs', 'percent', 'kib', 'mib')


@pytest.mark.parametrize('preset', sorted(name for name in PRESETS if name != 'absent'))
def test_every_file_of_every_kernel_is_exposed_by_convention(tmp_path, monkeypatch, preset):
    host = FakeHost(tmp_path, monkeypatch, preset=preset, run=1)
    host.kernel.share(10, 200)
    snapshot = run_main(ksm_info.main, {})
    families = {}
    samples = parse(_ksm_metrics.exposition(snapshot, duration=0.1), families)
    for name, (kind, help_text) in families.items():
        assert re.match(r'samepage_ksm_[a-z0-9_]+\Z', name), name
        assert kind in ('gauge', 'counter'), name
        assert kind == 'counter' if name.endswith('_total') else kind == 'gauge', name
        assert help_text and not help_text.endswith(' '), name
        assert not any(word in name.split('_') for word in UNIT_WORDS), name
    # every file of the kernel is there, under the name the conventions give it
    for name in host.kernel.names():
        metric = _ksm_metrics.metric_name(name, _ksm.CATALOGUE[name])[0]
        if _ksm.CATALOGUE[name].kind == _ksm.CHOICE:
            metric = 'samepage_ksm_' + name
        assert metric in families, (name, metric)
    assert samples[('samepage_ksm_pages_sharing', ())] == 200
    assert samples[('samepage_ksm_saved_bytes', ())] == 200 * snapshot['capabilities']['page_size']
    assert samples[('samepage_ksm_unmerge_needed_bytes', ())] == snapshot['unmerge_headroom']['needed_bytes']
    assert samples[('samepage_ksm_sleep_seconds', ())] == snapshot['settings']['sleep_millisecs'] / 1000.0


# ---------------------------------------------------------------------------------------------------
# The atomic write

def test_write_is_atomic_with_mode_0644(tmp_path, monkeypatch):
    path = tmp_path / 'samepage_ksm.prom'
    path.write_text('old\n')
    renames = []
    rename = os.rename

    def checked_rename(source, target):
        # at the moment of the rename the new file is complete and the old one still in place
        assert os.path.dirname(source) == str(tmp_path)
        with open(source) as handle:
            assert handle.read() == EXPECTED
        assert path.read_text() == 'old\n'
        renames.append(target)
        rename(source, target)
    monkeypatch.setattr(os, 'rename', checked_rename)
    old_umask = os.umask(0o077)
    try:
        _ksm_metrics.write_atomically(str(path), EXPECTED)
    finally:
        os.umask(old_umask)
    assert renames == [str(path)]
    assert path.read_text() == EXPECTED
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o644
    assert sorted(os.listdir(str(tmp_path))) == ['samepage_ksm.prom']


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / 'samepage_ksm.prom'
    path.write_text('old\n')

    def failing_rename(source, target):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(os, 'rename', failing_rename)
    with pytest.raises(OSError):
        _ksm_metrics.write_atomically(str(path), EXPECTED)
    assert path.read_text() == 'old\n'
    assert sorted(os.listdir(str(tmp_path))) == ['samepage_ksm.prom']


# ---------------------------------------------------------------------------------------------------
# The units

def test_service_unit():
    text = _ksm_metrics.render_service('/usr/bin/python3', '/var/lib/prometheus/node-exporter/', ' 5 % ')
    lines = text.splitlines()
    # systemd expands % specifiers in ExecStart: the margin's % is doubled
    assert ('ExecStart=/usr/bin/python3 -I /usr/lib/samepage-ksm/metrics/samepage-ksm-metrics --output '
            '/var/lib/prometheus/node-exporter/samepage_ksm.prom --memory-margin 5%%') in lines
    for line in ('Type=oneshot', 'ReadWritePaths=/var/lib/prometheus/node-exporter', 'ProtectSystem=strict',
                 'PrivateNetwork=yes', 'NoNewPrivileges=yes', 'UMask=0022'):
        assert line in lines
    assert '[Install]' not in lines      # the timer starts it
    assert text == _ksm_metrics.render_service('/usr/bin/python3', '/var/lib/prometheus/node-exporter', '5%')


def test_timer_unit():
    lines = _ksm_metrics.render_timer(15).splitlines()
    for line in ('OnBootSec=0', 'OnUnitActiveSec=15s', 'Unit=samepage-ksm-metrics.service', 'WantedBy=timers.target'):
        assert line in lines


@pytest.mark.parametrize('directory', ['relative/dir', '/with space', '/a"b', '/a%b', '/a$b', '/a/../etc', '', None,
                                       '/a\nb', '/ä'])
def test_bad_directories_are_refused_naming_the_option(directory):
    with pytest.raises(_ksm_metrics.MetricsConfigError) as info:
        _ksm_metrics.render_service('/usr/bin/python3', directory)
    assert info.value.option == 'directory' and repr(directory) in info.value.msg


@pytest.mark.parametrize('interval', [0, 4, 86401, -1, True, 1.5, '60'])
def test_bad_intervals_are_refused(interval):
    with pytest.raises(_ksm_metrics.MetricsConfigError) as info:
        _ksm_metrics.render_timer(interval)
    assert info.value.option == 'interval' and 'from 5 to 86400' in info.value.msg


def test_bad_margin_is_refused():
    with pytest.raises(_ksm_metrics.MetricsConfigError) as info:
        _ksm_metrics.render_service('/usr/bin/python3', '/var/lib/x', '5%; rm -rf /')
    assert info.value.option == 'memory_margin' and 'memory_margin' in info.value.msg


# ---------------------------------------------------------------------------------------------------
# The program against the fake host

@pytest.fixture
def host(tmp_path, monkeypatch):
    fake = FakeHost(tmp_path, monkeypatch, preset='6.12', run=1)
    monkeypatch.setattr(_ksm_tuner, 'DEFAULT_STATE_PATH', str(fake.tuner_state))
    monkeypatch.setattr(_ksm_tuner, 'UNIT_PATH', str(fake.tuner_unit))
    fake.kernel.share(100, 1500)
    fake.add_process(4242, 'qemu-system-x86', ksm_stat={'ksm_rmap_items': 1600, 'ksm_merging_pages': 1500},
                     merging_pages=1500, cmdline=['/usr/bin/qemu-system-x86_64', '-name', 'guest=web01,debug-threads=on'])
    return fake


def test_program_writes_what_ksm_info_reports(host, tmp_path):
    out = tmp_path / 'textfile' / 'samepage_ksm.prom'
    out.parent.mkdir()
    assert _ksm_metrics.main(['--output', str(out), '--memory-margin', '1G']) == 0
    samples = parse(out.read_text())
    info = run_main(ksm_info.main, {'memory_margin': '1G'})
    for name in ('pages_shared', 'pages_sharing', 'full_scans'):
        metric = _ksm_metrics.metric_name(name, _ksm.CATALOGUE[name])[0]
        assert samples[(metric, ())] == info['counters'][name], name
    assert samples[('samepage_ksm_saved_bytes', ())] == info['savings']['bytes_saved']
    headroom = info['unmerge_headroom']
    assert samples[('samepage_ksm_unmerge_margin_bytes', ())] == headroom['margin_bytes'] == 1 << 30
    assert samples[('samepage_ksm_unmerge_budget_bytes', ())] == headroom['budget_bytes']
    assert samples[('samepage_ksm_guest_merging_pages', (('guest', 'web01'),))] == 1500
    assert samples[('samepage_ksm_snapshot_success', ())] == 1
    assert ('samepage_ksm_ksmd_cpu_seconds_total', ()) not in samples      # no ksmd in the fake /proc
    assert ('samepage_ksm_tuner_running', ()) not in samples               # no tuner either
    assert sorted(os.listdir(str(out.parent))) == ['samepage_ksm.prom']


def test_program_to_stdout_and_failures(host, capsys, tmp_path):
    assert _ksm_metrics.main(['--output', '-']) == 0
    assert 'samepage_ksm_available 1\n' in capsys.readouterr().out
    assert _ksm_metrics.main(['--output', '-', '--memory-margin', 'lots']) == 2
    assert 'memory_margin' in capsys.readouterr().err
    assert _ksm_metrics.main(['--output', str(tmp_path / 'missing-dir' / 'x.prom')]) == 1
    assert 'cannot write' in capsys.readouterr().err


def test_program_reports_a_failed_snapshot_in_the_file(host, tmp_path, capsys):
    (host.proc / 'meminfo').unlink()       # the headroom cannot be judged
    out = tmp_path / 'samepage_ksm.prom'
    assert _ksm_metrics.main(['--output', str(out)]) == 1
    samples = parse(out.read_text())
    assert samples[('samepage_ksm_snapshot_success', ())] == 0
    assert samples[('samepage_ksm_pages_sharing', ())] == 1500
    assert 'snapshot_success 0' in capsys.readouterr().err
