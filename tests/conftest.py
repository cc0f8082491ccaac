# SPDX-License-Identifier: GPL-3.0-or-later
"""Makes the collection importable as ansible_collections.samepage.ksm for every pytest suite.

Ansible finds collections only under a directory named ansible_collections/<namespace>/<name>; a
clone can live anywhere, so a link to it is made under tests/output (git-ignored, and ignored by
ansible-test) and put first on sys.path and on ANSIBLE_COLLECTIONS_PATH for the ansible commands the
system and lab suites run.
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS_ROOT = os.path.join(REPO, 'tests', 'output', 'collections')
LINK = os.path.join(COLLECTIONS_ROOT, 'ansible_collections', 'samepage', 'ksm')


def _link_collection():
    if os.path.realpath(REPO).split(os.sep)[-3:-2] == ['ansible_collections']:
        # Already checked out as ansible_collections/samepage/ksm (ansible-test units does this).
        return os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(REPO))))
    if not os.path.islink(LINK):
        os.makedirs(os.path.dirname(LINK), exist_ok=True)
        try:
            os.symlink(os.path.relpath(REPO, os.path.dirname(LINK)), LINK)
        except FileExistsError:   # another pytest of the same run (the lab stage starts several) made it
            pass
    return COLLECTIONS_ROOT


_ROOT = _link_collection()
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
os.environ['ANSIBLE_COLLECTIONS_PATH'] = os.pathsep.join(
    [_ROOT] + [p for p in os.environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep) if p and p != _ROOT])
