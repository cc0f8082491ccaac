# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""KSM settings that survive a reboot: a systemd oneshot unit that writes the knobs early at boot.

The kernel keeps no KSM setting across a reboot (there is no sysctl or command-line parameter), so
samepage.ksm.ksm_sysfs renders the knobs into /etc/systemd/system/samepage-ksm-sysfs.service. The unit
runs before sysinit.target, so before ksm.service, ksmtuned.service and the hypervisor (qemu-kvm,
libvirtd, virtqemud) start: nothing is merged yet, so merge_across_nodes and max_page_sharing are
always writable there. It writes the knobs in _ksm.WRITE_ORDER, one ExecStart line each, run last.

It is enabled by a symlink in sysinit.target.wants/, made here rather than by `systemctl enable`, so
it also works where systemd is not PID 1 (a chroot, an image build, a container); `systemctl
daemon-reload` is needed only where systemd is running, and the caller does it (see reload_needed).

Private to samepage.ksm (leading underscore). Standard library only, no Ansible imports, Python 3.8+.
"""

import errno
import os
import re
import tempfile

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm

UNIT_NAME = 'samepage-ksm-sysfs.service'
UNIT_DIR = '/etc/systemd/system'
WANTED_BY = 'sysinit.target'
SYSTEMD_RUN_DIR = '/run/systemd/system'    # exists only while systemd is PID 1 (sd_booted())
MANAGER = 'samepage.ksm.ksm_sysfs'
MODES = ('merge', 'replace')

# Units that must find the knobs already set: the distributions' KSM services and the hypervisor.
BEFORE = ('sysinit.target', 'ksm.service', 'ksmtuned.service', 'qemu-kvm.service', 'libvirtd.service',
          'virtqemud.service', 'shutdown.target')

# Matched with fullmatch: `$` would also accept a final newline.
_EXEC_RE = re.compile(r"ExecStart=/bin/sh -c 'echo ([A-Za-z0-9-]+) > (?P<dir>/\S+)/([a-z_]+)'")
_SAFE_VALUE_RE = re.compile(r'[A-Za-z0-9-]+')


class BootConfigError(_ksm.KsmError):
    """The boot configuration (the systemd unit that applies the knobs at boot) cannot be read, rendered or
    written. A KsmError, because the unit is the kernel settings' second home: whoever handles a failed
    knob handles a failed persistence of it the same way."""


def _systemd_escape(text):
    """systemd expands % specifiers in ExecStart; %% is a literal percent sign."""
    return text.replace('%', '%%')


def render(knobs, ksm_dir=None):
    """The unit file that sets knobs ({name: value}) at boot: byte-identical for the same knobs.

    Values are validated again here (the unit runs them through /bin/sh), so nothing but a decimal
    number or a kernel choice word can reach the command line.
    """
    ksm_dir = ksm_dir or _ksm.KSM_DIR
    unknown = sorted(set(knobs) - set(_ksm.WRITE_ORDER))
    if unknown:
        raise BootConfigError('Cannot persist %s: not a writable KSM knob' % ', '.join(unknown), knob=unknown[0])
    lines = [
        '# Managed by %s (Ansible collection samepage.ksm). Do not edit: the next run of the' % MANAGER,
        '# module rewrites this file. It writes the KSM settings below at every boot, in the order the',
        '# kernel needs, before ksm.service, ksmtuned.service and the hypervisor start.',
        '[Unit]',
        'Description=KSM settings of samepage.ksm (/sys/kernel/mm/ksm)',
        'Documentation=https://docs.kernel.org/admin-guide/mm/ksm.html',
        'DefaultDependencies=no',
        'ConditionPathIsDirectory=%s' % _systemd_escape(ksm_dir),
        'After=systemd-modules-load.service',
        'Before=%s' % ' '.join(BEFORE),
        'Conflicts=shutdown.target',
        '',
        '[Service]',
        'Type=oneshot',
        'RemainAfterExit=yes',
    ]
    for name in _ksm.WRITE_ORDER:
        if name not in knobs:
            continue
        value = _ksm.encode(name, _ksm.validate(name, knobs[name]))
        if not _SAFE_VALUE_RE.fullmatch(value):   # pragma: no cover - validate() admits nothing else
            raise BootConfigError('Refusing to render %s=%r into a boot unit' % (name, value), knob=name)
        lines.append(_systemd_escape("ExecStart=/bin/sh -c 'echo %s > %s/%s'" % (value, ksm_dir, name)))
    lines += ['', '[Install]', 'WantedBy=%s' % WANTED_BY, '']
    return '\n'.join(lines)


def parse(text):
    """The knobs a unit rendered by render() sets: {name: typed value}. Lines it did not write are ignored
    (a hand-edited file then renders differently and is rewritten)."""
    knobs = {}
    for line in text.splitlines():
        match = _EXEC_RE.fullmatch(line.strip())
        if not match:
            continue
        value, name = match.group(1), match.group(3)
        if name not in _ksm.WRITE_ORDER:
            continue
        try:
            knobs[name] = _ksm.validate(name, _ksm.parse(name, value))
        except _ksm.KsmError:
            continue
    return knobs


def combine(previous, task, mode='merge'):
    """The knobs to persist after a task: previous ones updated with the task's (merge), or exactly the
    task's (replace).

    The result must apply cleanly at boot, in WRITE_ORDER. One combination cannot: pages_to_scan with
    advisor_mode=scan-time (the advisor owns pages_to_scan; the kernel refuses the write). A persisted
    pages_to_scan is dropped when the task turns the advisor on (the kernel resets it live as well);
    a pages_to_scan given by the task next to a persisted scan-time advisor is refused.
    """
    if mode not in MODES:
        raise BootConfigError('Invalid persist_mode %r: expected merge or replace' % (mode,), option='persist_mode')
    if mode == 'replace':
        result = dict(task)
    else:
        result = dict(previous)
        result.update(task)
    if result.get('advisor_mode') == 'scan-time' and 'pages_to_scan' in result:
        if 'pages_to_scan' in task:
            raise BootConfigError(
                'Cannot persist pages_to_scan=%s: the boot configuration (%s) also sets advisor_mode=scan-time, '
                'and the advisor owns pages_to_scan (the kernel would refuse the write at boot). Set '
                'advisor_mode=none in this task, or use persist_mode=replace.' % (task['pages_to_scan'], UNIT_NAME),
                knob='pages_to_scan', value=task['pages_to_scan'])
        del result['pages_to_scan']
    return result


class BootConfig:
    """The boot unit and its enablement symlink under one systemd unit directory."""

    def __init__(self, unit_dir=None, systemd_run_dir=None, ksm_dir=None):
        self.unit_dir = unit_dir or UNIT_DIR
        self.systemd_run_dir = systemd_run_dir or SYSTEMD_RUN_DIR
        self.ksm_dir = ksm_dir or _ksm.KSM_DIR
        self.unit_path = os.path.join(self.unit_dir, UNIT_NAME)
        self.wants_dir = os.path.join(self.unit_dir, WANTED_BY + '.wants')
        self.link_path = os.path.join(self.wants_dir, UNIT_NAME)

    # -- reading ------------------------------------------------------------------------------------
    def read_text(self):
        """The unit file's text, or None when there is none."""
        try:
            with open(self.unit_path, 'rb') as handle:
                return handle.read().decode('utf-8', 'replace')
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise BootConfigError('Cannot read the boot configuration %s: %s' % (self.unit_path, err.strerror))

    def read(self):
        """The persisted knobs ({} when there is no unit)."""
        text = self.read_text()
        return parse(text) if text is not None else {}

    def enabled(self):
        """Whether the enablement symlink exists and points at the unit."""
        return os.path.islink(self.link_path) and os.readlink(self.link_path) == self.unit_path

    def link_text(self, present):
        """How the enablement symlink shows in a diff."""
        return ('symbolic link to %s\n' % self.unit_path) if present else ''

    def reload_needed(self):
        """systemd is running here (so it must re-read unit files after they change)."""
        return os.path.isdir(self.systemd_run_dir)

    # -- planning -----------------------------------------------------------------------------------
    def plan(self, knobs):
        """What persisting knobs means here: a BootPlan (before/after texts, whether anything changes).

        An empty knobs removes the unit and the symlink.
        """
        before_text = self.read_text()
        after_text = render(knobs, self.ksm_dir) if knobs else None
        return BootPlan(self, before_text, after_text, self.enabled(), bool(knobs))

    # -- writing ------------------------------------------------------------------------------------
    def stage(self, text):
        """Write text to a temporary file next to the unit (same filesystem, so the move is a rename)."""
        try:
            if not os.path.isdir(self.unit_dir):
                os.makedirs(self.unit_dir, 0o755)
            fd, path = tempfile.mkstemp(prefix='.%s.' % UNIT_NAME, suffix='.tmp', dir=self.unit_dir)
        except OSError as err:
            raise BootConfigError('Cannot write the boot configuration in %s: %s' % (self.unit_dir, err.strerror))
        try:
            try:
                os.fchmod(fd, 0o644)
                os.write(fd, text.encode('utf-8'))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:
            self.discard(path)
            raise BootConfigError('Cannot write the boot configuration %s: %s' % (path, err.strerror))
        return path

    @staticmethod
    def discard(path):
        try:
            os.unlink(path)
        except OSError:
            pass

    def install(self, staged, atomic_move=None):
        """Move a staged file into place and make sure the unit is enabled."""
        try:
            if atomic_move is not None:
                atomic_move(staged, self.unit_path)
                os.chmod(self.unit_path, 0o644)   # atomic_move derives new files' mode from the umask
            else:
                os.rename(staged, self.unit_path)
        except OSError as err:
            self.discard(staged)
            raise BootConfigError('Cannot install the boot configuration %s: %s' % (self.unit_path, err.strerror))
        self.enable()

    def enable(self):
        """Create the symlink in sysinit.target.wants/ atomically (a temporary link renamed into place)."""
        if self.enabled():
            return False
        try:
            if not os.path.isdir(self.wants_dir):
                os.makedirs(self.wants_dir, 0o755)
            temporary = os.path.join(self.wants_dir, '.%s.%d.tmp' % (UNIT_NAME, os.getpid()))
            if os.path.lexists(temporary):
                os.unlink(temporary)
            os.symlink(self.unit_path, temporary)
            os.rename(temporary, self.link_path)
        except OSError as err:
            raise BootConfigError('Cannot enable the boot configuration (%s -> %s): %s'
                                  % (self.link_path, self.unit_path, err.strerror))
        return True

    def remove(self):
        """Remove the symlink and the unit. Returns whether anything was there."""
        removed = False
        for path in (self.link_path, self.unit_path):
            try:
                os.unlink(path)
                removed = True
            except OSError as err:
                if err.errno != errno.ENOENT:
                    raise BootConfigError('Cannot remove the boot configuration %s: %s' % (path, err.strerror))
        return removed


class BootPlan:
    """The boot configuration before and after a task, and the steps that get there."""

    def __init__(self, config, before_text, after_text, enabled_before, keep):
        self.config = config
        self.before_text = before_text
        self.after_text = after_text
        self.enabled_before = enabled_before
        self.keep = keep
        self.staged = None

    @property
    def changed(self):
        if self.keep:
            return self.before_text != self.after_text or not self.enabled_before
        return self.before_text is not None or os.path.lexists(self.config.link_path)

    @property
    def after(self):
        return parse(self.after_text) if self.after_text is not None else {}

    def diff(self):
        """before/after of the unit file and of the enablement symlink (as ansible diff dicts)."""
        return [
            dict(before_header=self.config.unit_path, after_header=self.config.unit_path,
                 before=self.before_text or '', after=self.after_text or ''),
            dict(before_header=self.config.link_path, after_header=self.config.link_path,
                 before=self.config.link_text(self.enabled_before), after=self.config.link_text(self.keep)),
        ]

    def stage(self):
        """Prepare the new file before anything else is changed (so a read-only /etc fails early)."""
        if self.keep and self.before_text != self.after_text:
            self.staged = self.config.stage(self.after_text)

    def abandon(self):
        if self.staged:
            self.config.discard(self.staged)
            self.staged = None

    def commit(self, atomic_move=None):
        """Make it so. Returns whether systemd must re-read unit files (daemon-reload)."""
        if not self.changed:
            self.abandon()
            return False
        if self.keep:
            if self.staged:
                staged, self.staged = self.staged, None
                self.config.install(staged, atomic_move)
            else:
                self.config.enable()
        else:
            self.config.remove()
        return self.config.reload_needed()
