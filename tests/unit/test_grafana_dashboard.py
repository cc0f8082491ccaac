# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""docs/grafana/samepage-ksm.json: valid JSON, and every query names only metrics the writer produces
(_ksm_metrics, for the fullest snapshot: every file of the kernel catalogue, the tuner, guests, writers) or
that node_exporter's textfile collector adds; every legend label is one those metrics carry."""

import json
import os
import re

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm, _ksm_metrics

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = os.path.join(REPO, 'docs', 'grafana', 'samepage-ksm.json')
# Added by node_exporter's textfile collector itself (per file, and for the whole directory).
NODE_EXPORTER = {'node_textfile_mtime_seconds': ('file',), 'node_textfile_scrape_error': ()}


def typical(knob):
    if knob.kind == _ksm.CHOICE:
        return knob.choices[0]
    if knob.kind == _ksm.BOOL:
        return True
    return 1


def produced():
    """{metric name: set of its label names} of everything the writer can produce."""
    settings = {knob.name: typical(knob) for knob in _ksm.WRITABLE_KNOBS + _ksm.LEGACY_KNOBS}
    counters = {knob.name: typical(knob) for knob in _ksm.COUNTERS}
    snapshot = {
        'available': True, 'capabilities': {'page_size': 4096}, 'settings': settings, 'counters': counters,
        'savings': {'bytes_saved': 1, 'zero_pages_bytes': 0, 'general_profit': 1},
        'ksmd': {'cpu_seconds': 1.0},
        'unmerge_headroom': {'needed_bytes': 1, 'memory_margin': '5%', 'margin_bytes': 1, 'budget_bytes': 2,
                             'headroom_bytes': 1},
        'tuner': {'running': True, 'phase': 'idle', 'run': 1, 'pages_to_scan': 100, 'sleep_millisecs': 200,
                  'updated': '2026-11-30T21:45:12Z'},
        'process_scan': {'complete': True}, 'guests': [{'name': 'web01', 'merging_pages': 1}],
        'competing_writers': [{'name': 'ksmtuned', 'ours': False}],
    }
    names = {}
    for family in _ksm_metrics.families(snapshot, duration=0.1):
        labels = set()
        for sample_labels, dummy in family.samples:
            labels.update(sample_labels)
        names[family.name] = labels
    return names


def queries(dashboard):
    for panel in dashboard['panels']:
        for target in panel.get('targets', []):
            yield panel['title'], target['expr'], target.get('legendFormat', '')
    for variable in dashboard['templating']['list']:
        if variable.get('type') == 'query':
            yield variable['name'], variable['query']['query'], ''


def test_the_dashboard_is_json_with_panels_and_a_data_source_variable():
    with open(DASHBOARD) as handle:
        dashboard = json.load(handle)
    assert dashboard['uid'] == 'samepage-ksm' and dashboard['panels']
    assert [v['name'] for v in dashboard['templating']['list']][:1] == ['datasource']
    ids = [panel['id'] for panel in dashboard['panels']]
    assert len(ids) == len(set(ids))


def test_queries_name_only_metrics_the_exporter_writes():
    with open(DASHBOARD) as handle:
        dashboard = json.load(handle)
    known = produced()
    known.update({name: set(labels) for name, labels in NODE_EXPORTER.items()})
    used = set()
    for title, expr, legend in queries(dashboard):
        names = set(re.findall(r'\b(?:samepage_ksm|node)_[a-zA-Z0-9_]+', expr))
        assert names, (title, expr)
        unknown = sorted(name for name in names if name not in known)
        assert not unknown, '%s: %s names metrics nobody writes: %s' % (title, expr, unknown)
        labels = set().union(*(known[name] for name in names)) | {'instance', 'job'}
        for label in re.findall(r'\{\{\s*(\w+)\s*\}\}', legend):
            assert label in labels, '%s: legend label %s is not a label of %s' % (title, label, sorted(names))
        used.update(names)
    # the headline figures of docs/metrics.md are on the dashboard
    for name in ('samepage_ksm_saved_bytes', 'samepage_ksm_ksmd_cpu_seconds_total', 'samepage_ksm_unmerge_headroom_bytes',
                 'samepage_ksm_guest_merging_pages', 'samepage_ksm_tuner_phase', 'samepage_ksm_competing_writer'):
        assert name in used, name


def test_a_misspelt_metric_would_be_found():
    known = produced()
    assert 'samepage_ksm_saved_bytes' in known and 'samepage_ksm_bytes_saved' not in known
    assert known['samepage_ksm_guest_merging_pages'] == {'guest'}
