# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Writes the intersphinx inventory that lets the docs site build offline (tools/ci.sh docs-site).

The pages antsibull-docs generates refer to the Ansible documentation by label (ansible.builtin
plugins, "common return values", the configuration settings). Intersphinx would download the Ansible
documentation's inventory to resolve them; this machine has no network for that. This script finds
every :ref: label the site uses but does not define, and writes a Sphinx inventory (version 2) that maps
the ones it knows to their pages under the Ansible documentation's address. A label it does not know is
left out, so Sphinx still warns about it (and the build, run with -W, fails): a broken reference of our
own is never hidden.

    python tools/docsite_inventory.py RST_DIR OUTPUT.inv
"""

import os
import re
import sys
import zlib

REF = re.compile(r':ref:`(?:[^`<]*<([^`>]+)>|([^`<>]+))`')
LABEL = re.compile(r'^\.\. _([^:]+):\s*$', re.MULTILINE)
PLUGIN = re.compile(r'^ansible_collections\.([a-z0-9_]+)\.([a-z0-9_]+)\.([a-z0-9_]+)_([a-z_]+)$')

# Labels of the Ansible documentation that antsibull-docs' pages use: (page, title).
KNOWN = {
    'common_return_values': ('reference_appendices/common_return_values.html', 'Return Values'),
    'ansible_configuration_settings': ('reference_appendices/config.html', 'Ansible Configuration Settings'),
}


def rst_files(root):
    for directory, dummy, names in os.walk(root):
        for name in sorted(names):
            if name.endswith('.rst'):
                yield os.path.join(directory, name)


def external_labels(root):
    """Labels referred to with :ref: in the .rst files under root but defined in none of them."""
    used, defined = set(), set()
    for path in rst_files(root):
        with open(path, encoding='utf-8') as handle:
            text = handle.read()
        used.update(target or plain for target, plain in REF.findall(text))
        defined.update(LABEL.findall(text))
    return sorted(label.strip() for label in used - defined)


def location(label):
    """(page, title) of a label in the Ansible documentation, or None when unknown."""
    if label in KNOWN:
        return KNOWN[label]
    match = PLUGIN.match(label)
    if match:
        namespace, collection, name, kind = match.groups()
        return ('collections/%s/%s/%s_%s.html' % (namespace, collection, name, kind),
                '%s.%s.%s %s' % (namespace, collection, name, kind))
    return None


def inventory(labels):
    lines = []
    for label in labels:
        found = location(label)
        if found:
            page, title = found
            lines.append('%s std:label -1 %s %s\n' % (label, page, title))
    header = ('# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n'
              '# The remainder of this file is compressed using zlib.\n')
    return header.encode('utf-8') + zlib.compress(''.join(lines).encode('utf-8')), lines


def main(argv):
    if len(argv) != 3:
        sys.stderr.write('usage: python %s RST_DIR OUTPUT.inv\n' % argv[0])
        return 2
    labels = external_labels(argv[1])
    data, lines = inventory(labels)
    with open(argv[2], 'wb') as handle:
        handle.write(data)
    unknown = [label for label in labels if not location(label)]
    print('%s: %d label(s) of the Ansible documentation%s' % (
        argv[2], len(lines), '; unknown, left for Sphinx to report: %s' % ', '.join(unknown) if unknown else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
