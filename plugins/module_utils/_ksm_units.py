# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which systemd units and packages provide ksm and ksmtuned on each distribution.

Two logical services:

* ``ksm``: KSM switched on at boot. ``ksm.service`` (a oneshot that writes run=1 on start and run=0 on
  stop) everywhere it is packaged; on Ubuntu, when ksm.service is absent, ``qemu-kvm.service`` from
  qemu-system-common plays that part (its KSM_ENABLED in /etc/default/qemu-kvm decides). Proxmox VE
  has no ksm unit at all.
* ``ksmtuned``: the tuning daemon, ``ksmtuned.service``. Where ksm.service exists next to it, it has
  Requires=ksm.service and After=ksm.service (Proxmox's has neither).

The distribution (from /etc/os-release: ID, ID_LIKE, VERSION_ID) tells which package to name when a
unit is missing. Which units exist is decided by systemd itself (LoadState), and existence wins over
the tables: a ksm.service found on Proxmox, or a missing one on Debian, is taken as it is.

Private to samepage.ksm (leading underscore). Standard library only, Python 3.8+ syntax.
"""

import os

from ansible_collections.samepage.ksm.plugins.module_utils import _systemd

OS_RELEASE_PATHS = ('/etc/os-release', '/usr/lib/os-release')
# Proxmox VE ships Debian's os-release; these exist only on a Proxmox VE host.
PROXMOX_MARKERS = ('/usr/bin/pveversion', '/etc/pve')
# Where TuneD's cpu-partitioning/realtime profiles note that they masked the KSM units.
TUNED_KSM_MASKED = '/var/lib/tuned/ksm-masked'

LOGICAL_NAMES = ('ksm', 'ksmtuned')
KSM_UNIT = 'ksm.service'
KSMTUNED_UNIT = 'ksmtuned.service'
UBUNTU_QEMU_UNIT = 'qemu-kvm.service'
# Every unit that may play a logical part: asked about in one `systemctl show`.
CANDIDATE_UNITS = (KSM_UNIT, KSMTUNED_UNIT, UBUNTU_QEMU_UNIT)

RHEL_LIKE_IDS = ('rhel', 'centos', 'almalinux', 'rocky', 'ol', 'openela', 'circle', 'eurolinux',
                 'navylinux', 'miraclelinux')

FAMILY_NAMES = {
    'rhel': 'RHEL',
    'fedora': 'Fedora',
    'debian': 'Debian',
    'ubuntu': 'Ubuntu',
    'arch': 'Arch Linux',
    'proxmox': 'Proxmox VE',
}


# ---------------------------------------------------------------------------------------------------
# /etc/os-release

def _unquote(value):
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in ('"', "'"):
        quote = value[0]
        value = value[1:-1]
        if quote == '"':
            out = []
            chars = iter(value)
            for char in chars:
                if char == '\\':
                    char = next(chars, '')
                out.append(char)
            value = ''.join(out)
    return value


def parse_os_release(text):
    """os-release(5) text -> {KEY: value}. Comments, blank and malformed lines are ignored."""
    result = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        key, sep, value = line.partition('=')
        key = key.strip()
        if not sep or not key.replace('_', '').isalnum():
            continue
        result[key] = _unquote(value)
    return result


def read_os_release(paths=None):
    """The first readable os-release file, parsed; {} when there is none."""
    for path in (paths or OS_RELEASE_PATHS):
        try:
            with open(path) as handle:
                return parse_os_release(handle.read())
        except OSError:
            continue
    return {}


def _major(version_id):
    digits = ''
    for char in (version_id or '').strip():
        if char.isdigit():
            digits += char
        else:
            break
    return int(digits) if digits else None


class Distribution:
    """What the tables need to know about the host: family, major version and a printable name."""

    def __init__(self, os_release=None, proxmox=False):
        os_release = os_release or {}
        self.id = os_release.get('ID', '').strip().lower()
        self.like = os_release.get('ID_LIKE', '').lower().split()
        self.version_id = os_release.get('VERSION_ID', '').strip()
        self.major = _major(self.version_id)
        self.pretty_name = os_release.get('PRETTY_NAME') or ' '.join(
            part for part in (os_release.get('NAME', self.id), self.version_id) if part) or 'this system'
        self.proxmox = bool(proxmox)
        self.family = self._family()

    def _family(self):
        ids = [self.id] + self.like
        if self.proxmox and 'debian' in ids:
            return 'proxmox'
        if self.id == 'fedora':
            return 'fedora'
        if self.id in RHEL_LIKE_IDS or 'rhel' in self.like or 'centos' in self.like:
            # Fedora-numbered derivatives that call themselves rhel-like (e.g. VERSION_ID=40)
            if self.major is not None and self.major >= 20 and 'fedora' in ids:
                return 'fedora'
            return 'rhel'
        if 'fedora' in ids:
            return 'fedora'
        if 'ubuntu' in ids:
            return 'ubuntu'
        if 'debian' in ids:
            return 'debian'
        if 'arch' in ids:
            return 'arch'
        return None

    def as_dict(self):
        return {'id': self.id, 'id_like': list(self.like), 'version_id': self.version_id,
                'family': self.family, 'name': self.pretty_name}


def detect(os_release_paths=None, proxmox_markers=None):
    """The Distribution of this host (paths default to the module constants, read at call time)."""
    proxmox = any(os.path.exists(path) for path in (proxmox_markers or PROXMOX_MARKERS))
    return Distribution(read_os_release(os_release_paths), proxmox=proxmox)


# ---------------------------------------------------------------------------------------------------
# The tables: which package provides which unit

def package_for(distro, unit):
    """The package that provides `unit` on this distribution, or None when the tables do not know.

    RHEL 7/8: qemu-kvm-common; RHEL 9+ and Fedora 29+: ksmtuned; Fedora <= 28: ksm (a qemu subpackage);
    Debian/Ubuntu: ksmtuned (Ubuntu's qemu-kvm.service: qemu-system-common); Arch: ksmtuned-git (AUR);
    Proxmox VE: ksm-control-daemon (ksmtuned.service only).
    """
    if unit == UBUNTU_QEMU_UNIT:
        return 'qemu-system-common' if distro.family == 'ubuntu' else None
    if unit not in (KSM_UNIT, KSMTUNED_UNIT):
        return None
    family, major = distro.family, distro.major
    if family == 'rhel':
        if major is None:
            return 'ksmtuned'
        if major <= 6:
            return 'qemu-kvm'
        return 'qemu-kvm-common' if major <= 8 else 'ksmtuned'
    if family == 'fedora':
        return 'ksm' if major is not None and major <= 28 else 'ksmtuned'
    if family in ('debian', 'ubuntu'):
        return 'ksmtuned'
    if family == 'arch':
        return 'ksmtuned-git'
    if family == 'proxmox':
        return 'ksm-control-daemon' if unit == KSMTUNED_UNIT else None
    return None


def table_units(distro):
    """{logical name: unit} as the tables expect them on this distribution (None: no such unit)."""
    if distro.family == 'proxmox':
        return {'ksm': None, 'ksmtuned': KSMTUNED_UNIT}
    return {'ksm': KSM_UNIT, 'ksmtuned': KSMTUNED_UNIT}


def _install_hint(distro, package):
    if distro.family in ('debian', 'ubuntu', 'proxmox'):
        return 'apt-get install %s' % package
    if distro.family in ('rhel', 'fedora'):
        return 'dnf install %s' % package if (distro.major or 99) >= 8 or distro.family == 'fedora' \
            else 'yum install %s' % package
    if distro.family == 'arch':
        return 'build %s from the AUR' % package
    return 'install %s' % package


def missing_message(name, distro):
    """Why the logical service `name` has no unit here, and which package would provide it."""
    where = distro.pretty_name
    if name == 'ksm' and distro.family == 'proxmox':
        return ('%s has no ksm unit: its ksm-control-daemon package ships only ksmtuned.service, which '
                'switches KSM on and off by itself. Manage name=ksmtuned instead, or set run with '
                'samepage.ksm.ksm_sysfs.' % where)
    if name == 'ksm' and distro.family == 'ubuntu':
        return ('Neither ksm.service nor qemu-kvm.service is installed on %s: install the package ksmtuned '
                '(ksm.service and ksmtuned.service; apt-get install ksmtuned) or qemu-system-common '
                '(qemu-kvm.service, which switches KSM on as KSM_ENABLED in /etc/default/qemu-kvm says).'
                % where)
    unit = KSM_UNIT if name == 'ksm' else KSMTUNED_UNIT
    package = package_for(distro, unit)
    if package is None:
        return ('%s is not installed, and no package is known to provide it on %s (it is usually '
                'packaged as ksmtuned).' % (unit, where))
    text = '%s is not installed: on %s it comes with the package %s (%s).' % (
        unit, where, package, _install_hint(distro, package))
    if distro.family in ('debian', 'ubuntu'):
        text += ' Installing it enables and starts ksm.service and ksmtuned.service at once.'
    return text


# ---------------------------------------------------------------------------------------------------
# What is really there

class Resolution:
    """The units that play the logical parts on this host, as found (systemctl show of CANDIDATE_UNITS)."""

    def __init__(self, distro, statuses):
        self.distro = distro
        self.statuses = statuses
        found = {unit: _systemd.exists(statuses.get(unit, {})) for unit in CANDIDATE_UNITS}
        ksm = None
        if found[KSM_UNIT]:
            ksm = KSM_UNIT
        elif found[UBUNTU_QEMU_UNIT] and distro.family == 'ubuntu':
            ksm = UBUNTU_QEMU_UNIT
        self.units = {'ksm': ksm, 'ksmtuned': KSMTUNED_UNIT if found[KSMTUNED_UNIT] else None}
        tuned = statuses.get(KSMTUNED_UNIT, {})
        self.ksmtuned_requires_ksm = False
        if ksm and self.units['ksmtuned']:
            if _systemd.is_masked(tuned) and not tuned.get('requires'):
                # A masked unit is loaded from /dev/null, so systemd shows no Requires= for it: the
                # tables tell (every ksmtuned.service next to a ksm.service requires it, Proxmox's aside).
                self.ksmtuned_requires_ksm = ksm == KSM_UNIT and distro.family != 'proxmox'
            else:
                # Read from the unit itself, not from the tables (Proxmox's ksmtuned.service has none).
                self.ksmtuned_requires_ksm = ksm in (tuned.get('requires') or [])

    def unit(self, name):
        return self.units.get(name)

    def package(self, name):
        unit = self.units.get(name)
        if unit is None:
            unit = table_units(self.distro).get(name)
        return package_for(self.distro, unit) if unit else None

    def require(self, name):
        unit = self.units.get(name)
        if unit is None:
            raise _systemd.SystemdError(missing_message(name, self.distro), unit=name,
                                        package=self.package(name))
        return unit

    def present(self):
        """{logical name: unit} of the parts that exist here."""
        return {name: unit for name, unit in self.units.items() if unit}


def masked_message(units, tuned_marker=None):
    """Why systemd refuses to act on masked units, who probably masked them, and how to go ahead."""
    if isinstance(units, str):
        units = [units]
    tuned_marker = tuned_marker or TUNED_KSM_MASKED
    if len(units) == 1:
        text = '%s is masked' % units[0]
    else:
        text = '%s and %s are masked' % (', '.join(units[:-1]), units[-1])
    them = 'it' if len(units) == 1 else 'them'
    text += ', so systemd refuses to start, restart, reload or enable %s' % them
    if os.path.exists(tuned_marker):
        text += (". TuneD masked %s: %s exists, which TuneD's cpu-partitioning and realtime profiles "
                 'leave when they mask ksm.service and ksmtuned.service; switching TuneD to another '
                 'profile unmasks them, and applying such a profile again masks them again'
                 % (them, tuned_marker))
    else:
        text += (" (TuneD's cpu-partitioning and realtime profiles mask the KSM units; so does "
                 "`systemctl mask`)")
    return text + '. Set unmask=true to unmask %s and go ahead.' % them


# ---------------------------------------------------------------------------------------------------
# What ksm_info reports (services=true): the KSM services as systemd sees them, in one `systemctl show`

NO_SYSTEMD = ('systemd is not running on this host (PID 1 is not systemd: %s does not exist), so whether the KSM '
              'services run or are enabled cannot be asked')


def services_report(run_command, get_bin_path, runtime_dir=None, distro=None):
    """{'systemd': bool, 'reason': why not asked or None, 'units': [one dict per logical service]}.

    Each unit dict: name (ksm, ksmtuned), unit (the unit that plays the part here; the distribution's usual one
    when none is installed), installed, enabled, running, masked, state (systemctl's words). Without systemd
    as PID 1 (a container, a chroot) nothing is asked and `units` is empty: the caller must not take that for
    "stopped". A systemctl that fails is said in `reason` the same way.
    """
    report = {'systemd': False, 'reason': None, 'units': []}
    runtime_dir = runtime_dir or _systemd.RUNTIME_DIR
    if not _systemd.booted(runtime_dir):
        report['reason'] = NO_SYSTEMD % runtime_dir
        return report
    binary = get_bin_path('systemctl')
    if not binary:
        report['reason'] = 'systemctl is not installed on this host, although systemd appears to run (%s exists)' \
            % runtime_dir
        return report
    try:
        statuses = _systemd.Systemctl(run_command, binary).show(CANDIDATE_UNITS)
    except _systemd.SystemdError as err:
        report['reason'] = err.msg
        return report
    distro = distro or detect()
    resolution = Resolution(distro, statuses)
    report['systemd'] = True
    for name in LOGICAL_NAMES:
        unit = resolution.unit(name)
        status = statuses.get(unit, {}) if unit else {}
        report['units'].append({
            'name': name,
            'unit': unit or table_units(distro).get(name),
            'installed': unit is not None,
            'enabled': bool(unit) and _systemd.is_enabled(status),
            'running': bool(unit) and _systemd.is_running(status),
            'masked': bool(unit) and _systemd.is_masked(status),
            'state': _systemd.describe(status) if unit else 'not installed',
        })
    return report
