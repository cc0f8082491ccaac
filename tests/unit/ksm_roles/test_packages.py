# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The roles' package table (roles/ksm/vars/platform/*.yml, read by roles/ksm/tasks/packages.yml for both
roles) names the same package as plugins/module_utils/_ksm_units.py (which ksm_service names when a unit
is missing), on every platform both know.

The roles' choice is computed as the role computes it: the file names of __ksm_platform_files
(roles/ksm/vars/main.yml) templated with the host's facts, the first that exists, its
__ksm_platform_packages templated with the same facts, all through Ansible's own templating.
"""

import os

import pytest

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_units

ROLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
                    'roles', 'ksm')
PLATFORM_DIR = os.path.join(ROLE, 'vars', 'platform')

# (what Ansible's facts say, what /etc/os-release says) of real systems
PLATFORMS = {
    'Debian 12': (('Debian', 'Debian', '12'), {'ID': 'debian', 'VERSION_ID': '12'}),
    'Debian 13': (('Debian', 'Debian', '13'), {'ID': 'debian', 'VERSION_ID': '13'}),
    'Ubuntu 24.04': (('Ubuntu', 'Debian', '24'), {'ID': 'ubuntu', 'ID_LIKE': 'debian', 'VERSION_ID': '24.04'}),
    'RHEL 6': (('RedHat', 'RedHat', '6'), {'ID': 'rhel', 'VERSION_ID': '6.10'}),
    'CentOS 6': (('CentOS', 'RedHat', '6'), {'ID': 'centos', 'ID_LIKE': 'rhel fedora', 'VERSION_ID': '6'}),
    'RHEL 7': (('RedHat', 'RedHat', '7'), {'ID': 'rhel', 'ID_LIKE': 'fedora', 'VERSION_ID': '7.9'}),
    'CentOS 7': (('CentOS', 'RedHat', '7'), {'ID': 'centos', 'ID_LIKE': 'rhel fedora', 'VERSION_ID': '7'}),
    'Oracle Linux 7': (('OracleLinux', 'RedHat', '7'), {'ID': 'ol', 'ID_LIKE': 'fedora', 'VERSION_ID': '7.9'}),
    'RHEL 8': (('RedHat', 'RedHat', '8'), {'ID': 'rhel', 'ID_LIKE': 'fedora', 'VERSION_ID': '8.10'}),
    'Rocky 8': (('Rocky', 'RedHat', '8'), {'ID': 'rocky', 'ID_LIKE': 'rhel centos fedora', 'VERSION_ID': '8.9'}),
    'AlmaLinux 8': (('AlmaLinux', 'RedHat', '8'), {'ID': 'almalinux', 'ID_LIKE': 'rhel centos fedora',
                                                   'VERSION_ID': '8.10'}),
    'RHEL 9': (('RedHat', 'RedHat', '9'), {'ID': 'rhel', 'ID_LIKE': 'fedora', 'VERSION_ID': '9.4'}),
    'CentOS Stream 9': (('CentOS', 'RedHat', '9'), {'ID': 'centos', 'ID_LIKE': 'rhel fedora', 'VERSION_ID': '9'}),
    'Rocky 9': (('Rocky', 'RedHat', '9'), {'ID': 'rocky', 'ID_LIKE': 'rhel centos fedora', 'VERSION_ID': '9.4'}),
    'RHEL 10': (('RedHat', 'RedHat', '10'), {'ID': 'rhel', 'ID_LIKE': 'centos fedora', 'VERSION_ID': '10.0'}),
    'Fedora 27': (('Fedora', 'RedHat', '27'), {'ID': 'fedora', 'VERSION_ID': '27'}),
    'Fedora 28': (('Fedora', 'RedHat', '28'), {'ID': 'fedora', 'VERSION_ID': '28'}),
    'Fedora 29': (('Fedora', 'RedHat', '29'), {'ID': 'fedora', 'VERSION_ID': '29'}),
    'Fedora 41': (('Fedora', 'RedHat', '41'), {'ID': 'fedora', 'VERSION_ID': '41'}),
}

# Platforms where the roles install nothing on purpose, and why.
NOT_INSTALLED = {
    # ksmtuned-git lives in the AUR: pacman cannot install it; the role's message names it instead.
    'Arch Linux': (('Archlinux', 'Archlinux', 'rolling'), {'ID': 'arch', 'BUILD_ID': 'rolling'}),
}


def _templar(facts):
    distribution, os_family, major = facts
    variables = {'ansible_facts': {'distribution': distribution, 'os_family': os_family,
                                   'distribution_major_version': major}}
    return Templar(loader=DataLoader(), variables=variables)


def _load(path):
    loader = DataLoader()
    try:
        return loader.load_from_file(path, trusted_as_template=True)
    except TypeError:   # ansible-core before 2.19: every loaded string is a template
        return loader.load_from_file(path)


def role_packages(facts):
    """The packages the roles install on a host with these facts (roles/ksm/tasks/packages.yml)."""
    templar = _templar(facts)
    names = templar.template(_load(os.path.join(ROLE, 'vars', 'main.yml'))['__ksm_platform_files'])
    for name in names:
        path = os.path.join(PLATFORM_DIR, name)
        if os.path.isfile(path):
            return list(templar.template(_load(path)['__ksm_platform_packages']))
    raise AssertionError('no file of %s exists in %s' % (names, PLATFORM_DIR))


def units_package(os_release):
    return _ksm_units.package_for(_ksm_units.Distribution(os_release), _ksm_units.KSMTUNED_UNIT)


@pytest.mark.parametrize('platform', sorted(PLATFORMS))
def test_roles_install_the_package_ksm_units_names(platform):
    facts, os_release = PLATFORMS[platform]
    expected = units_package(os_release)
    assert expected, platform
    assert role_packages(facts) == [expected], platform


@pytest.mark.parametrize('platform', sorted(NOT_INSTALLED))
def test_roles_install_nothing_where_the_package_manager_cannot(platform):
    facts, os_release = NOT_INSTALLED[platform]
    assert role_packages(facts) == []
    assert units_package(os_release) == 'ksmtuned-git'


def test_every_platform_file_is_used():
    """A file of vars/platform that no platform above reaches would be a table entry nobody checks."""
    used = set()
    for facts, _os_release in list(PLATFORMS.values()) + list(NOT_INSTALLED.values()):
        templar = _templar(facts)
        for name in templar.template(_load(os.path.join(ROLE, 'vars', 'main.yml'))['__ksm_platform_files']):
            if os.path.isfile(os.path.join(PLATFORM_DIR, name)):
                used.add(name)
                break
    assert used == set(os.listdir(PLATFORM_DIR))
