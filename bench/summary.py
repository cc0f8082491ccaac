# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Markdown of the saved results (bench/results/*.json): `python3 bench/summary.py [NAME ...]`.

Standard library only, so it runs with any python3; used to write the figures into bench/README.md.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ORDER = ('converge_host', 'converge_lab', 'merge_host', 'merge_guest', 'merge_two_guests', 'unmerge_host')


def cell(value):
    if value is None or value == '':
        return '-'
    if isinstance(value, float):
        return '%.2f' % value if abs(value) < 100 else '%.0f' % value
    return str(value).replace('|', '\\|')


def markdown(name):
    path = os.path.join(HERE, 'results', name + '.json')
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        data = json.load(handle)
    m = data['machine']
    lines = ['### %s' % data['title'], '',
             'Measured %s on `%s`: %s, %d CPUs, %.0f GiB, kernel %s, %s, %s; load average at start %s.'
             % (m['date'], m['hostname'], m['cpu_model'], m['nproc'], m['mem_gib'], m['kernel'], m['os'],
                m['ansible'], ' / '.join(str(x) for x in m['load_at_start'])), '',
             '| ' + ' | '.join(data['headers']) + ' |',
             '|' + '|'.join('---' for dummy in data['headers']) + '|']
    for row in data['rows']:
        lines.append('| ' + ' | '.join(cell(c) for c in row) + ' |')
    lines.append('')
    for note in data.get('notes', []):
        lines.append('- ' + note)
    lines += ['', '![%s](results/%s.png)' % (name, name), '']
    return '\n'.join(lines)


def main(argv):
    names = argv or ORDER
    for name in names:
        text = markdown(name)
        if text:
            print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
