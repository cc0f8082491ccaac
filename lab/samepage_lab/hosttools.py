# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host tools the lab needs (QEMU, debootstrap, ssh), installed with apt-get when missing."""

import os
import shutil

from .common import LabError, flocked, indent, run, say


# Host tools and the Debian packages that provide them.
TOOLS = {
    'qemu-system-x86_64': 'qemu-system-x86',
    'debootstrap': 'debootstrap',
    'mke2fs': 'e2fsprogs',
    'ssh': 'openssh-client',
    'ssh-keygen': 'openssh-client',
}
BOOT_TOOLS = ('qemu-system-x86_64', 'ssh', 'ssh-keygen')
BUILD_TOOLS = ('debootstrap', 'mke2fs')
# The set the demo installs in one go (qemu-utils and zstd are handy for inspecting images).
APT_PACKAGES = ('qemu-system-x86', 'qemu-utils', 'debootstrap', 'zstd', 'openssh-client', 'e2fsprogs')


def missing_tools(names):
    return [name for name in names if not shutil.which(name, path=os.environ.get('PATH', '') + ':/usr/sbin:/sbin')]


def ensure_tools(names, install=True):
    """Make sure the host tools exist; install their Debian packages with apt-get when allowed."""
    missing = missing_tools(names)
    if not missing:
        return
    packages = sorted(set(TOOLS[name] for name in missing))
    hint = 'apt-get install --no-install-recommends %s' % ' '.join(packages)
    if not install:
        raise LabError('missing %s; install them with: %s' % (', '.join(missing), hint))
    if os.geteuid() != 0 or not shutil.which('apt-get'):
        raise LabError('missing %s and cannot install it here (needs root and apt-get); run as root: %s'
                       % (', '.join(missing), hint))
    wanted = sorted(set(packages) | set(APT_PACKAGES))
    say('installing %s with apt-get (missing: %s)' % (' '.join(wanted), ', '.join(missing)))
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    with flocked('/var/lib/samepage-ksm-lab-apt.lock', 'apt-get'):
        update = run(['apt-get', 'update', '-q'], env=env)
        install_result = run(['apt-get', 'install', '-y', '-q', '--no-install-recommends'] + wanted, env=env)
    still = missing_tools(names)
    if install_result.returncode != 0 or still:
        raise LabError('missing %s, and apt-get could not install it.\n'
                       'apt-get update said:\n%s\napt-get install said:\n%s\n'
                       'Install it by hand (%s) and run again.'
                       % (', '.join(still or missing), indent(update.stdout.strip()[-1500:]),
                          indent(install_result.stdout.strip()[-2500:]), hint))
    say('installed %s' % ' '.join(wanted))
