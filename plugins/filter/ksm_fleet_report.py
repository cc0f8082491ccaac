# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r'''
name: ksm_fleet_report
short_description: Summarise the M(samepage.ksm.ksm_info) results of a fleet per host, per group and in total
version_added: 0.1.0
description:
  - Reads the registered M(samepage.ksm.ksm_info) result of every host in O(hosts) from O(_input) (the
    C(hostvars) magic variable) and returns the figures of the fleet report of the C(samepage.ksm.report)
    playbook - per host, per inventory group and for the whole fleet - with every byte figure also as
    text (C(60.0 MiB)), a plain-text summary and a CSV.
  - A host that cannot be read is reported as such, never with zeros - RV(_value.hosts[].status) is
    V(unreachable), V(failed) (the module failed; RV(_value.hosts[].message) says why), V(ksm_missing) (the
    kernel has no KSM, M(samepage.ksm.ksm_info) returned C(available=false)) or V(not_read) (no result -
    the host was not in the run). Totals add up the hosts that were read and say how many could not be.
  - Only figures M(samepage.ksm.ksm_info) returns are used; a figure it does not return is V(null) here and
    C(n/a) in the text. The unmerge estimate is (C(pages_sharing) + C(ksm_zero_pages)) times the page size,
    as M(samepage.ksm.ksm_unmerge) estimates it. What the host could spend on an unmerge (C(MemAvailable)
    plus C(SwapFree)) is read from C(memory.mem_available) and C(memory.swap_free) of the result, ksmd's
    CPU time from C(ksmd.cpu_seconds), and the tuner's state from C(tuner), when the result has them.
  - A process is one "KSM does not pay for" when its KSM reverse-map items exceed 64 per merged page
    (the kernel's documentation, 64-bit - its metadata then outweighs what merging saves); this needs
    C(rmap_items), which kernels with C(/proc/<pid>/ksm_stat) report.
positional: _input, hosts
options:
  _input:
    description: The C(hostvars) magic variable (or any mapping of host name to that host's variables).
    type: dict
    required: true
  hosts:
    description: The hosts to report, in this order (normally C(ansible_play_hosts_all)).
    type: list
    elements: str
    required: true
  result_var:
    description: Name of the variable each host registered the M(samepage.ksm.ksm_info) result in.
    type: str
    default: ksm_report_info
  groups:
    description:
      - The inventory groups to total, in this order.
      - By default every group of the reported hosts (C(group_names)), sorted, C(ungrouped) last.
    type: list
    elements: str
  top_processes:
    description: How many processes to list per host, the most merged pages first.
    type: int
    default: 5
author:
  - samepage.ksm contributors (@samepage)
'''

EXAMPLES = r'''
- name: Read KSM on every host
  samepage.ksm.ksm_info:
  register: ksm_report_info
  ignore_unreachable: true
  ignore_errors: true

- name: Show what KSM saves across the fleet
  ansible.builtin.debug:
    msg: "{{ (hostvars | samepage.ksm.ksm_fleet_report(ansible_play_hosts_all)).text }}"
  run_once: true

# The groups of interest only, ten processes per host
- name: Write the summary as CSV
  ansible.builtin.copy:
    content: "{{ (hostvars | samepage.ksm.ksm_fleet_report(ansible_play_hosts_all, groups=['dense', 'balanced'],
                  top_processes=10)).csv }}"
    dest: /tmp/ksm.csv
    mode: '0644'
  run_once: true
  delegate_to: localhost
'''

RETURN = r'''
_value:
  description: The report.
  type: dict
  contains:
    hosts:
      description: One entry per host, in the order of O(hosts). Byte figures are integers, V(null) where not
        known; each has a C(_text) twin (C(60.0 MiB), C(n/a)).
      type: list
      elements: dict
      contains:
        name:
          description: Inventory name.
          type: str
        groups:
          description: The host's inventory groups (C(group_names)).
          type: list
          elements: str
        status:
          description: V(ok), V(ksm_missing), V(unreachable), V(failed) or V(not_read).
          type: str
        status_text:
          description: The status in words (C(read), C(KSM missing), C(unreachable), C(module failed), C(not read)).
          type: str
        message:
          description: Why the host could not be read (the task's C(msg)); empty when it was read.
          type: str
        saved_bytes:
          description: C(savings.bytes_saved) - C(pages_sharing) times the page size.
          type: int
        general_profit:
          description: C(savings.general_profit), the kernel's figure (Linux 6.4 and newer).
          type: int
        unmerge_needed_bytes:
          description: Memory an unmerge would allocate, (C(pages_sharing) + C(ksm_zero_pages)) times the page size.
          type: int
        unmerge_available_bytes:
          description: C(MemAvailable) plus C(SwapFree), when the result reports them.
          type: int
        headroom_bytes:
          description: RV(_value.hosts[].unmerge_available_bytes) minus RV(_value.hosts[].unmerge_needed_bytes).
          type: int
        ksmd_cpu_seconds:
          description: CPU time of ksmd, when the result reports it.
          type: float
        settings:
          description: C(run), C(pages_to_scan) and C(sleep_millisecs) (V(null) where the kernel lacks one).
          type: dict
        competing_managers:
          description: Programs that rewrite KSM knobs, with those knobs (C(competing_managers) of the result).
          type: dict
        processes:
          description: The O(top_processes) processes with the most merged pages.
          type: list
          elements: dict
        not_paying:
          description: Processes whose reverse-map items exceed 64 per merged page; V(null) when the kernel
            does not report reverse-map items.
          type: list
          elements: dict
        tuner:
          description:
            - The C(tuner) entry of the result, V(null) without one. The report's text of the samepage
              tuner (as M(samepage.ksm.ksm_info) reports it) shows its phase, rate and ksmd CPU.
          type: raw
    groups:
      description: Totals per group - host counts per status, and the sums of the hosts that were read.
      type: list
      elements: dict
    fleet:
      description: The same totals for every reported host.
      type: dict
    text:
      description: A plain-text summary (fleet, groups, hosts, hosts that could not be read).
      type: str
    csv:
      description: One CSV row per host (raw integers in bytes; C(n/a) where a figure is not known).
      type: str
'''

import csv
import io

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

# The kernel's rule of thumb (Documentation/admin-guide/mm/ksm.rst, "Monitoring KSM profit"): a process
# whose ksm_rmap_items exceed 64 per merging page (64-bit) spends more on KSM metadata than it saves.
RMAP_ITEMS_PER_PAGE_LIMIT = 64
KNOBS = ('run', 'pages_to_scan', 'sleep_millisecs')
RUN_MEANING = {0: 'stopped', 1: 'running', 2: 'stopped, unmerged'}
STATUS_TEXT = {
    'ok': 'read',
    'ksm_missing': 'KSM missing',
    'unreachable': 'unreachable',
    'failed': 'module failed',
    'not_read': 'not read',
}
UNREADABLE = ('ksm_missing', 'unreachable', 'failed', 'not_read')
NA = 'n/a'
BYTE_UNITS = ('B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB')


def human_bytes(number):
    """62914560 -> '60.0 MiB' (binary units, one decimal; bytes below 1 KiB as an integer); None -> 'n/a'."""
    if number is None:
        return NA
    value = float(number)
    index = 0
    while abs(value) >= 1024 and index < len(BYTE_UNITS) - 1:
        value /= 1024
        index += 1
    if index == 0:
        return '%d B' % value
    return '%.1f %s' % (value, BYTE_UNITS[index])


def exact_bytes(number):
    """62914560 -> '62,914,560 bytes'; None -> 'n/a'."""
    if number is None:
        return NA
    return '{0:,} bytes'.format(int(number))


def _number(value):
    """An int or float from a result, or None (booleans and text are not figures)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _mapping(value):
    return value if isinstance(value, Mapping) else {}


def _status(result):
    if not isinstance(result, Mapping) or result.get('skipped'):
        return 'not_read', 'no ksm_info result for this host (it was not part of the run, or the task was skipped)'
    if result.get('unreachable'):
        return 'unreachable', str(result.get('msg') or 'the host could not be reached')
    if result.get('failed'):
        return 'failed', str(result.get('msg') or 'ksm_info failed without a message')
    if not result.get('available'):
        return 'ksm_missing', str(result.get('msg') or 'ksm_info reports that this host has no KSM')
    return 'ok', ''


def _process_row(row, page_size):
    merging = _number(row.get('merging_pages'))
    rmap = _number(row.get('rmap_items'))
    merged_bytes = _number(row.get('merging_bytes'))
    if merged_bytes is None and merging is not None and page_size:
        merged_bytes = merging * page_size
    ratio = None
    if rmap is not None and merging:
        ratio = round(float(rmap) / merging, 1)
    profit = _number(row.get('profit'))
    return {
        'pid': row.get('pid'),
        'command': str(row.get('command', '')),
        'merging_pages': merging,
        'merging_bytes': merged_bytes,
        'merging_bytes_text': human_bytes(merged_bytes),
        'rmap_items': rmap,
        'rmap_items_per_page': ratio,
        'profit': profit,
        'profit_text': human_bytes(profit),
        'pays': None if rmap is None else rmap <= RMAP_ITEMS_PER_PAGE_LIMIT * (merging or 0),
    }


def _host(name, hostvars, result_var, top):
    variables = hostvars[name] if name in hostvars else {}
    result = variables.get(result_var) if isinstance(variables, Mapping) else None
    groups = list(variables.get('group_names') or []) if isinstance(variables, Mapping) else []
    status, message = _status(result)
    host = {
        'name': name,
        'groups': groups or ['ungrouped'],
        'status': status,
        'status_text': STATUS_TEXT[status],
        'message': message,
        'kernel': None,
        'saved_bytes': None,
        'zero_pages_bytes': None,
        'general_profit': None,
        'sharing_ratio': None,
        'pages_shared': None,
        'pages_sharing': None,
        'unmerge_needed_bytes': None,
        'unmerge_available_bytes': None,
        'headroom_bytes': None,
        'ksmd_cpu_seconds': None,
        'settings': {knob: None for knob in KNOBS},
        'run_text': NA,
        'competing_managers': {},
        'processes': [],
        'processes_read': 0,
        'not_paying': None,
        'tuner': None,
    }
    if status == 'ok':
        savings = _mapping(result.get('savings'))
        counters = _mapping(result.get('counters'))
        settings = _mapping(result.get('settings'))
        capabilities = _mapping(result.get('capabilities'))
        memory = _mapping(result.get('memory'))
        page_size = _number(capabilities.get('page_size'))
        sharing = _number(counters.get('pages_sharing'))
        host.update(
            kernel=capabilities.get('kernel_release'),
            saved_bytes=_number(savings.get('bytes_saved')),
            zero_pages_bytes=_number(savings.get('zero_pages_bytes')),
            general_profit=_number(savings.get('general_profit')),
            sharing_ratio=_number(savings.get('sharing_ratio')),
            pages_shared=_number(counters.get('pages_shared')),
            pages_sharing=sharing,
            ksmd_cpu_seconds=_number(_mapping(result.get('ksmd')).get('cpu_seconds')),
            competing_managers={str(key): list(value) if isinstance(value, (list, tuple)) else [str(value)]
                                for key, value in _mapping(result.get('competing_managers')).items()},
            tuner=result.get('tuner'),
        )
        if sharing is not None and page_size:
            zero = _number(counters.get('ksm_zero_pages')) or 0
            host['unmerge_needed_bytes'] = (sharing + zero) * page_size
        available, swap = _number(memory.get('mem_available')), _number(memory.get('swap_free'))
        if available is not None and swap is not None:
            host['unmerge_available_bytes'] = available + swap
            if host['unmerge_needed_bytes'] is not None:
                host['headroom_bytes'] = host['unmerge_available_bytes'] - host['unmerge_needed_bytes']
        for knob in KNOBS:
            host['settings'][knob] = _number(settings.get(knob))
        if host['settings']['run'] is not None:
            host['run_text'] = RUN_MEANING.get(host['settings']['run'], 'run=%s' % host['settings']['run'])
        rows = [_process_row(row, page_size) for row in result.get('processes') or [] if isinstance(row, Mapping)]
        host['processes'] = rows[:top]
        host['processes_read'] = len(rows)
        if any(row['rmap_items'] is not None for row in rows):
            host['not_paying'] = [row for row in rows if row['pays'] is False]
    for key in ('saved_bytes', 'zero_pages_bytes', 'general_profit', 'unmerge_needed_bytes',
                'unmerge_available_bytes', 'headroom_bytes'):
        host[key + '_text'] = human_bytes(host[key])
    host['saved_bytes_exact'] = exact_bytes(host['saved_bytes'])
    host['ksmd_cpu_text'] = NA if host['ksmd_cpu_seconds'] is None else '%.1f s' % host['ksmd_cpu_seconds']
    host['sharing_ratio_text'] = NA if host['sharing_ratio'] is None else '%.2f' % host['sharing_ratio']
    host['tuner_text'] = _tuner_text(host['tuner'])
    return host


# ksm_info's `tuner` (the samepage tuner's state file) has some twenty keys: the report shows these.
TUNER_SUMMARY = ('phase', 'pages_to_scan', 'sleep_millisecs', 'ksmd_cpu_percent')


def _tuner_text(tuner):
    if tuner is None:
        return NA
    if isinstance(tuner, Mapping):
        if 'installed' in tuner and 'running' in tuner:     # ksm_info's report of the samepage tuner
            text = ', '.join('%s=%s' % (key, tuner[key]) for key in TUNER_SUMMARY if key in tuner)
            if not tuner['running']:
                text = 'not running' + (' (%s)' % text if text else '')
            return text
        return ', '.join('%s=%s' % (key, value) for key, value in sorted(tuner.items())
                         if not isinstance(value, (dict, list))) or NA
    return str(tuner)


def _total(name, hosts):
    read = [host for host in hosts if host['status'] == 'ok']
    total = {
        'name': name,
        'hosts': [host['name'] for host in hosts],
        'host_count': len(hosts),
        'read': len(read),
        'unreadable': len(hosts) - len(read),
    }
    for status in UNREADABLE:
        total[status] = len([host for host in hosts if host['status'] == status])
    for key in ('saved_bytes', 'general_profit', 'unmerge_needed_bytes'):
        known = [host[key] for host in read if host[key] is not None]
        total[key] = sum(known) if known else None
        total[key + '_hosts'] = len(known)
        total[key + '_text'] = human_bytes(total[key])
    judged = [host for host in read if host['headroom_bytes'] is not None]
    total['short_of_memory'] = len([host for host in judged if host['headroom_bytes'] < 0]) if judged else None
    total['headroom_hosts'] = len(judged)
    audited = [host for host in read if host['not_paying'] is not None]
    total['not_paying'] = sum(len(host['not_paying']) for host in audited) if audited else None
    return total


def _default_groups(hosts):
    names = set()
    for host in hosts:
        names.update(host['groups'])
    return sorted(names, key=lambda group: (group == 'ungrouped', group))


def _fraction(value, largest):
    if value is None or not largest or value <= 0:
        return 0.0
    return round(min(float(value) / largest, 1.0), 4)


def _table(header, rows):
    widths = [max(len(str(row[index])) for row in [header] + rows) for index in range(len(header))]
    lines = []
    for row in [header] + rows:
        lines.append('  '.join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    return lines


def _settings_text(host):
    values = [host['settings'][knob] for knob in KNOBS]
    return '/'.join(NA if value is None else str(value) for value in values)


def _text(report):
    fleet = report['fleet']
    lines = [
        'KSM fleet report: %d host(s), %d read, %d could not be read'
        % (fleet['host_count'], fleet['read'], fleet['unreadable']),
        'Fleet: %s saved, general_profit %s (%d of %d read hosts report it), unmerge would need %s'
        % (fleet['saved_bytes_text'], fleet['general_profit_text'], fleet['general_profit_hosts'], fleet['read'],
           fleet['unmerge_needed_bytes_text']),
        '',
        'Groups',
    ]
    lines += ['  ' + line for line in _table(
        ['group', 'hosts', 'read', 'unreadable', 'saved', 'general_profit', 'unmerge needs'],
        [[group['name'], group['host_count'], group['read'], group['unreadable'], group['saved_bytes_text'],
          group['general_profit_text'], group['unmerge_needed_bytes_text']] for group in report['groups']])]
    lines += ['', 'Hosts (knobs: run/pages_to_scan/sleep_millisecs; available: MemAvailable + SwapFree)']
    header = ['host', 'status', 'saved', 'general_profit']
    header += ['ksmd cpu'] if report['has_ksmd_cpu'] else []
    header += ['unmerge needs', 'available', 'knobs', 'competing']
    header += ['tuner'] if report['has_tuner'] else []
    rows = []
    for host in report['hosts']:
        if host['status'] != 'ok':
            rows.append([host['name'], host['status_text'].upper()] + [NA] * (len(header) - 2))
            continue
        row = [host['name'], host['status_text'], host['saved_bytes_text'], host['general_profit_text']]
        row += [host['ksmd_cpu_text']] if report['has_ksmd_cpu'] else []
        row += [host['unmerge_needed_bytes_text'], host['unmerge_available_bytes_text'], _settings_text(host),
                ', '.join(sorted(host['competing_managers'])) or '-']
        row += [host['tuner_text']] if report['has_tuner'] else []
        rows.append(row)
    lines += ['  ' + line for line in _table(header, rows)]
    if not report['has_ksmd_cpu']:
        lines.append('  ksmd CPU time: not reported by ksm_info')
    unreadable = [host for host in report['hosts'] if host['status'] != 'ok']
    if unreadable:
        lines += ['', 'Hosts that could not be read']
        lines += ['  %s: %s: %s' % (host['name'], host['status_text'], ' '.join(host['message'].split()))
                  for host in unreadable]
    not_paying = [(host['name'], row) for host in report['hosts'] for row in host['not_paying'] or []]
    if not_paying:
        lines += ['', 'Processes KSM does not pay for (more than %d rmap items per merged page)'
                  % RMAP_ITEMS_PER_PAGE_LIMIT]
        lines += ['  %s: pid %s %s, %s rmap items for %s merged pages'
                  % (name, row['pid'], row['command'], row['rmap_items'], row['merging_pages'])
                  for name, row in not_paying]
    return '\n'.join(lines) + '\n'


CSV_COLUMNS = ('host', 'groups', 'status', 'message', 'saved_bytes', 'general_profit', 'zero_pages_bytes',
               'sharing_ratio', 'unmerge_needed_bytes', 'unmerge_available_bytes', 'ksmd_cpu_seconds', 'run',
               'pages_to_scan', 'sleep_millisecs', 'competing_managers', 'not_paying_processes', 'tuner', 'kernel')


def _csv(report):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(CSV_COLUMNS)
    for host in report['hosts']:
        def cell(value):
            return NA if value is None else value
        writer.writerow([
            host['name'], ' '.join(host['groups']), host['status'], ' '.join(host['message'].split()),
            cell(host['saved_bytes']), cell(host['general_profit']), cell(host['zero_pages_bytes']),
            cell(host['sharing_ratio']), cell(host['unmerge_needed_bytes']), cell(host['unmerge_available_bytes']),
            cell(host['ksmd_cpu_seconds']), cell(host['settings']['run']), cell(host['settings']['pages_to_scan']),
            cell(host['settings']['sleep_millisecs']),
            ' '.join('%s(%s)' % (name, ','.join(knobs)) for name, knobs in sorted(host['competing_managers'].items())),
            NA if host['not_paying'] is None else len(host['not_paying']),
            NA if host['tuner'] is None else host['tuner_text'],
            cell(host['kernel']),
        ])
    return buffer.getvalue()


def ksm_fleet_report(hostvars, hosts, result_var='ksm_report_info', groups=None, top_processes=5):
    """The fleet report of the ksm_info results registered as `result_var` on `hosts`."""
    if not isinstance(hostvars, Mapping):
        raise AnsibleFilterError('ksm_fleet_report: the input must be hostvars (a mapping of host to variables), '
                                 'got %s' % type(hostvars).__name__)
    if isinstance(hosts, (str, Mapping)) or not hasattr(hosts, '__iter__'):
        raise AnsibleFilterError('ksm_fleet_report: hosts must be a list of host names (ansible_play_hosts_all), '
                                 'got %r' % (hosts,))
    try:
        top = int(top_processes)
    except (TypeError, ValueError):
        top = -1
    if top < 0:
        raise AnsibleFilterError('ksm_fleet_report: top_processes must be 0 or more, got %r' % (top_processes,))
    rows = [_host(str(name), hostvars, result_var, top) for name in hosts]
    group_names = _default_groups(rows) if groups is None else [str(group) for group in groups]
    report = {
        'hosts': rows,
        'groups': [_total(group, [host for host in rows if group in host['groups']]) for group in group_names],
        'fleet': _total('fleet', rows),
        'has_tuner': any(host['tuner'] is not None for host in rows),
        'has_ksmd_cpu': any(host['ksmd_cpu_seconds'] is not None for host in rows),
        'rmap_items_per_page_limit': RMAP_ITEMS_PER_PAGE_LIMIT,
    }
    # Bar lengths, as fractions of the largest figure of their kind.
    largest_saved = max([host['saved_bytes'] or 0 for host in rows] + [0])
    for host in rows:
        host['saved_fraction'] = _fraction(host['saved_bytes'], largest_saved)
        largest = max([host['unmerge_needed_bytes'] or 0, host['unmerge_available_bytes'] or 0])
        host['needed_fraction'] = _fraction(host['unmerge_needed_bytes'], largest)
        largest_process = max([row['merging_bytes'] or 0 for row in host['processes']] + [0])
        for row in host['processes']:
            row['fraction'] = _fraction(row['merging_bytes'], largest_process)
    largest_group = max([group['saved_bytes'] or 0 for group in report['groups']] + [0])
    for group in report['groups']:
        group['saved_fraction'] = _fraction(group['saved_bytes'], largest_group)
    report['text'] = _text(report)
    report['csv'] = _csv(report)
    return report


class FilterModule:
    """samepage.ksm's fleet report filter."""

    def filters(self):
        return {'ksm_fleet_report': ksm_fleet_report}
