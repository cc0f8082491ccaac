# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The collection's playbooks, reached both ways: by name (samepage.ksm.site, samepage.ksm.report), as users of
the installed collection run them, and by path from a clone (site.yml, playbooks/report.yml), as the README,
the lab and `make demo` do. (tools/ci.sh installed does the same on the built tarball.)

One `ansible-playbook --list-tasks` reads all four: it parses every play and loads the roles, so a playbook
or role that is not found fails it. Nothing runs on any host.
"""

import os
import re
import subprocess

import yaml

from ansible_collections.samepage.ksm.tests.support.ansible_cli import REPO, ansible_bin

PLAYBOOKS = ('site.yml', 'samepage.ksm.site', 'playbooks/report.yml', 'samepage.ksm.report')


def listed_playbooks(output):
    """{path after "playbook: ": [lines of its plays and tasks]} from ansible-playbook --list-tasks."""
    listed = {}
    lines = None
    for line in output.splitlines():
        found = re.match(r'^playbook: (.+)$', line)
        if found:
            lines = listed.setdefault(found.group(1), [])
        elif lines is not None and line.strip():
            lines.append(line.strip())
    return listed


def test_site_and_report_are_found_by_name_and_by_path():
    # tests/conftest.py has put this working tree first on ANSIBLE_COLLECTIONS_PATH.
    run = subprocess.run([ansible_bin('ansible-playbook'), '-i', os.path.join('inventory', 'example'), '--list-tasks']
                         + list(PLAYBOOKS), cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout
    listed = listed_playbooks(run.stdout)
    assert len(listed) == 4, run.stdout
    paths = list(listed)
    by_path, by_name, report_by_path, report_by_name = [listed[path] for path in paths]
    assert paths[0::2] == ['site.yml', 'playbooks/report.yml']
    # The names resolve to this working tree's playbooks/ (through the collections path tests/conftest.py sets).
    assert [os.path.realpath(path) for path in paths[1::2]] == [
        os.path.join(os.path.realpath(REPO), 'playbooks', name) for name in ('site.yml', 'report.yml')]
    # site.yml is the collection playbook, imported: the same play, the roles' tasks included.
    assert by_path == by_name
    assert by_path[0].startswith('play #1 (kvm_hosts): KSM per group of KVM hosts')
    assert any(line.startswith('samepage.ksm.ksm : Turn KSM on') for line in by_path)
    assert any(line.startswith('samepage.ksm.ksmtuned : Start and enable ksmtuned') for line in by_path)
    assert report_by_path == report_by_name
    assert any(line.startswith('Read KSM on every host') for line in report_by_path)


def test_the_root_site_yml_holds_no_play_of_its_own():
    # One play, in one place: the root file only imports the collection playbook.
    with open(os.path.join(REPO, 'site.yml')) as handle:
        root = yaml.safe_load(handle)
    assert root == [{'name': 'KSM per group of KVM hosts', 'ansible.builtin.import_playbook': 'playbooks/site.yml'}]
