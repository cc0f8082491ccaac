# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab for Ansible: its inventory (the groups of inventory/example and site.yml) and an environment in
which samepage.ksm resolves to this clone."""

import json
import os
import sys

from .common import REPO

PARENT_GROUP = 'kvm_hosts'


def write_inventory(lab):
    """Write the lab's inventory (groups of inventory/example under kvm_hosts); return its path."""
    os.makedirs(lab.inventory_dir, exist_ok=True)
    lines = [
        '# Written by lab/labctl.py for the lab in %s (rewritten on every `up`).' % lab.state_dir,
        '# Groups are those of inventory/example and site.yml; group_vars links to inventory/example.',
        'all:',
        '  vars:',
        '    ansible_host: 127.0.0.1',
        '    ansible_user: root',
        '    ansible_ssh_private_key_file: %s' % json.dumps(lab.key),
        '    ansible_ssh_common_args: %s' % json.dumps(
            '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes'),
        # One SSH connection per guest for a whole test session: a new connection costs a key exchange and a
        # login in the emulated guest (seconds each), and a master kept 30 minutes serves every playbook run.
        # No compression (-C, Ansible's default): over the loopback it only costs the guest's CPU. The
        # keep-alives end a master whose guest went away (a reboot) within 15 s.
        '    ansible_ssh_args: %s' % json.dumps(
            '-o ControlMaster=auto -o ControlPersist=30m -o ServerAliveInterval=5 -o ServerAliveCountMax=3'),
        '    ansible_ssh_pipelining: true',
        '    ansible_python_interpreter: /usr/bin/python3',
        '  children:',
        '    %s:' % PARENT_GROUP,
        '      children:',
    ]
    groups = []
    for guest in lab.guests:
        if guest.group not in groups:
            groups.append(guest.group)
    for group in groups:
        lines += ['        %s:' % group, '          hosts:']
        for guest in lab.guests:
            if guest.group != group:
                continue
            lines += [
                '            %s:' % guest.name,
                '              ansible_port: %d' % guest.port,
                '              lab_suite: %s' % guest.suite,
                '              lab_debian: %d' % guest.debian,
                '              lab_numa_nodes: %d' % guest.numa_nodes,
            ]
    tmp = lab.inventory + '.tmp'
    with open(tmp, 'w') as handle:
        handle.write('\n'.join(lines) + '\n')
    os.rename(tmp, lab.inventory)
    link = os.path.join(lab.inventory_dir, 'group_vars')
    target = os.path.join(REPO, 'inventory', 'example', 'group_vars')
    if os.path.islink(link) and os.readlink(link) != target:
        os.unlink(link)
    if not os.path.lexists(link):
        os.symlink(target, link)
    return lab.inventory


def collections_path(state_dir):
    """A directory with ansible_collections/samepage/ksm linked to this clone."""
    root = os.path.join(state_dir, 'collections')
    link = os.path.join(root, 'ansible_collections', 'samepage', 'ksm')
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.islink(link) and os.readlink(link) != REPO:
        os.unlink(link)
    if not os.path.lexists(link):
        os.symlink(REPO, link)
    return root


def ansible_env(state_dir):
    env = dict(os.environ)
    paths = [collections_path(state_dir)] + [p for p in env.get('ANSIBLE_COLLECTIONS_PATH', '').split(':') if p]
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': ':'.join(paths),
        'ANSIBLE_HOST_KEY_CHECKING': 'False',
        'ANSIBLE_NOCOLOR': env.get('ANSIBLE_NOCOLOR', '1' if not sys.stdout.isatty() else '0'),
        'ANSIBLE_RETRY_FILES_ENABLED': 'False',
    })
    return env
