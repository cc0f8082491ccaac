# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Other writers of the KSM knobs: who they are, how they are found, what they write and when.

A setting that another program silently undoes at the next boot or minute is the most common reason a
KSM configuration "does not stick". This file is the one place that knows those programs, as data
(WRITERS: name, knobs, when, remedy) and as one cheap reader per kind of evidence:

* processes: /proc/<pid>/comm, read once per process (bounded, binary-safe);
* units enabled by a symlink in a ``*.wants`` directory, and masked ones (a symlink to /dev/null),
  read from the file system: no systemctl, so it works without a running systemd;
* configuration files parsed as data, never sourced or executed: /etc/default/qemu-kvm, TuneD
  profiles (following ``include=``), tmpfiles.d, sysfs.conf, unit files with ``MemoryKSM=``.

Every reader takes a root path prefix (tests build a fake root file system), reads at most
MAX_FILE_BYTES of a file and at most MAX_UNIT_FILES unit files, and treats a missing, unreadable or
garbled file as "no evidence": a hostile file never raises. What a bounded scan skipped is reported.

Private to samepage.ksm (leading underscore). Standard library only, Python 3.8+ syntax; it imports no
other module_utils file, so that _ksm can build on it.
"""

import os
import re

ROOT = '/'
KSM_SYSFS = '/sys/kernel/mm/ksm/'
MAX_FILE_BYTES = 256 * 1024      # larger configuration files are read up to this size
MAX_UNIT_FILES = 4000            # unit files looked at for MemoryKSM=, beyond that the scan stops
MAX_DIR_ENTRIES = 2000           # entries of one tmpfiles.d/sysfs.d/*.wants directory
MAX_INCLUDE_DEPTH = 10           # TuneD include= chains
MAX_EVIDENCE = 20                # evidence lines kept per writer

EVERY_INTERVAL = 'every interval'
AT_BOOT = 'at boot'
PROFILE_SWITCH = 'at boot and at every TuneD profile switch'
PROCESS_START = 'when its processes start'

SYSTEMD_DIRS = ('etc/systemd/system', 'run/systemd/system', 'usr/lib/systemd/system', 'lib/systemd/system')
TMPFILES_DIRS = ('etc/tmpfiles.d', 'run/tmpfiles.d', 'usr/lib/tmpfiles.d', 'lib/tmpfiles.d')
TUNED_PROFILE_DIRS = ('etc/tuned/profiles', 'etc/tuned', 'usr/lib/tuned/profiles', 'usr/lib/tuned')
TUNED_ACTIVE_PROFILE = 'etc/tuned/active_profile'
TUNED_KSM_MASKED = 'var/lib/tuned/ksm-masked'
# TuneD profiles whose scripts switch KSM off (functions: disable_ksm masks ksm/ksmtuned, writes run=2).
TUNED_KSM_DISABLERS = ('cpu-partitioning', 'cpu-partitioning-powersave', 'realtime-virtual-host')
QEMU_KVM_DEFAULTS = 'etc/default/qemu-kvm'
TUNER_STATE = 'run/samepage-ksm/tuner.json'
TUNER_UNIT = 'samepage-ksm-tuner.service'

_PROFILE_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{0,127}')
_KNOB_NAME = re.compile(r'[a-z_]{1,64}')
_UNIT_NAME = re.compile(r'[A-Za-z0-9:_.@\\-]{1,255}')
# Values of run that keep ksmd stopped (0) or stop it and unmerge (2); anything else written to run starts it.
RUN_OFF = ('0', '2')
_MEMORY_KSM = re.compile(r'^[ \t]*MemoryKSM[ \t]*=[ \t]*(yes|true|on|1)[ \t]*$', re.IGNORECASE | re.MULTILINE)


class Writer:
    """One kind of other writer: what it writes, when, and what to change so that it stops."""

    __slots__ = ('name', 'knobs', 'when', 'remedy', 'ours', 'description', 'values', 'turns_on')

    def __init__(self, name, knobs, when, remedy, ours=False, description='', values=None, turns_on=None):
        self.name = name
        self.values = dict(values or {})     # knobs it always sets to the same value
        self.knobs = tuple(knobs)
        # Whether it can switch ksmd on (write run=1): by default every writer of run; the readers of writers
        # whose files say which value they write (TuneD, tmpfiles.d, sysfsutils, qemu-kvm's defaults) decide
        # per host.
        self.turns_on = ('run' in self.knobs) if turns_on is None else turns_on
        self.when = when
        self.remedy = remedy
        self.ours = ours
        self.description = description


WRITERS = (
    Writer('ksmtuned', ('run', 'pages_to_scan', 'sleep_millisecs'), EVERY_INTERVAL,
           'stop and disable ksmtuned (samepage.ksm.ksm_service name=ksmtuned state=stopped enabled=false), or tune '
           'it with the samepage.ksm.ksmtuned role instead of setting these knobs',
           description='ksmtuned daemon (process ksmtuned or ksmtuned.service enabled); every 60 s by default'),
    Writer('ksm.service', ('run',), AT_BOOT,
           'disable ksm.service (samepage.ksm.ksm_service name=ksm enabled=false) if run must not be 1 after a boot',
           description='the ksm service of the ksmtuned package: writes run=1 when it starts', values={'run': 1}),
    Writer('qemu-kvm.service', ('run', 'sleep_millisecs'), AT_BOOT,
           'set KSM_ENABLED (1, 0) and SLEEP_MILLISECS in /etc/default/qemu-kvm to the values you want',
           description="Ubuntu's qemu-kvm.service: writes run (KSM_ENABLED in /etc/default/qemu-kvm: 1, 0, or AUTO: "
                       '1 on bare metal, 0 in a VM) and sleep_millisecs (SLEEP_MILLISECS) when KSM is enabled'),
    Writer('enable-ksm.service', ('run', 'sleep_millisecs'), AT_BOOT,
           'set hardware.ksm.enable (and hardware.ksm.sleep) in the NixOS configuration to the values you want',
           description="NixOS's hardware.ksm: writes run=1 and optionally sleep_millisecs at boot"),
    Writer('tuned', ('run',), PROFILE_SWITCH,
           'switch the TuneD profile (tuned-adm profile ...) or remove its [sysfs] /sys/kernel/mm/ksm lines',
           description='TuneD: the [sysfs] lines of the active profile (and the profiles it includes); '
                       'cpu-partitioning and realtime-virtual-host switch KSM off (run=2, ksm units masked)',
           turns_on=False),
    Writer('tmpfiles.d', (), AT_BOOT,
           'remove the w /sys/kernel/mm/ksm/... lines from the tmpfiles.d file named in the evidence, or persist '
           'with samepage.ksm.ksm_sysfs persist=true instead',
           description='systemd-tmpfiles lines "w /sys/kernel/mm/ksm/<knob> ..." applied at every boot',
           turns_on=False),
    Writer('sysfsutils', (), AT_BOOT,
           'remove the kernel/mm/ksm lines from /etc/sysfs.conf or /etc/sysfs.d, or persist with '
           'samepage.ksm.ksm_sysfs persist=true instead',
           description='sysfsutils: "kernel/mm/ksm/<knob> = value" lines of /etc/sysfs.conf and /etc/sysfs.d',
           turns_on=False),
    Writer('ovirt-mom', ('run', 'pages_to_scan', 'sleep_millisecs', 'merge_across_nodes'), EVERY_INTERVAL,
           'switch KSM off in the oVirt cluster (Optimization: Enable KSM) or let oVirt manage KSM on this host',
           description="oVirt's VDSM with MOM (momd, vdsmd): its KSM policy rewrites these every policy interval"),
    Writer('kubevirt-virt-handler', ('run', 'pages_to_scan', 'sleep_millisecs'), EVERY_INTERVAL,
           "remove the node from KubeVirt's ksmConfiguration.nodeLabelSelector or let KubeVirt manage KSM",
           description="KubeVirt's virt-handler: writes these every 3 minutes on nodes its ksmConfiguration selects"),
    Writer('systemd MemoryKSM=', (), PROCESS_START,
           'remove MemoryKSM= from the units named in the evidence if their processes must not be merged',
           description='units with MemoryKSM=yes opt all their processes in to merging (prctl PR_SET_MEMORY_MERGE); '
                       'no knob is written'),
    Writer('samepage-ksm-tuner', ('run', 'pages_to_scan', 'sleep_millisecs'), EVERY_INTERVAL,
           'use ksm_tuner: samepage or none in the ksm role (samepage.ksm.ksm_tuner state=absent removes the tuner), '
           'or change its configuration instead of these knobs',
           ours=True, description="the collection's own tuner (samepage.ksm.ksm_tuner) owns these knobs"),
)
BY_NAME = {writer.name: writer for writer in WRITERS}

# Writers found by their process name (/proc/<pid>/comm, at most 15 characters): {comm: writer name}.
PROCESS_NAMES = {
    'ksmtuned': 'ksmtuned',
    'momd': 'ovirt-mom',
    'vdsmd': 'ovirt-mom',
    'virt-handler': 'kubevirt-virt-handler',
    'samepage-ksm-tu': 'samepage-ksm-tuner',    # comm is cut at 15 characters
}
# Writers found by their unit being enabled (a *.wants symlink): {unit: writer name}.
UNIT_NAMES = {
    'ksmtuned.service': 'ksmtuned',
    'ksm.service': 'ksm.service',
    'qemu-kvm.service': 'qemu-kvm.service',
    'enable-ksm.service': 'enable-ksm.service',
    'mom-vdsm.service': 'ovirt-mom',
    'momd.service': 'ovirt-mom',
    'vdsmd.service': 'ovirt-mom',
    TUNER_UNIT: 'samepage-ksm-tuner',
}
OVIRT_FILES = ('etc/vdsm/mom.d/03-ksm.policy', 'etc/vdsm/mom.conf', 'etc/momd.conf')


# ---------------------------------------------------------------------------------------------------
# Bounded, tolerant readers

def _path(root, relative):
    return os.path.join(root or ROOT, relative.lstrip('/'))


def _read(path, limit=MAX_FILE_BYTES):
    """Up to limit bytes of a file as text (undecodable bytes replaced), or None when it cannot be read."""
    try:
        with open(path, 'rb') as handle:
            data = handle.read(limit)
    except (OSError, ValueError):
        return None
    return data.decode('utf-8', 'replace')


def _listdir(path, limit=None, skipped=None):
    """Sorted names of a directory (at most limit, default MAX_DIR_ENTRIES), [] when it is missing or
    unreadable. What the limit leaves out is noted in the list skipped, when given."""
    limit = MAX_DIR_ENTRIES if limit is None else limit
    try:
        names = sorted(os.listdir(path))
    except (OSError, ValueError):
        return []
    note = '%s: looked at the first %d of %d entries only' % (path, limit, len(names))
    if len(names) > limit and skipped is not None and note not in skipped:
        skipped.append(note)
    return names[:limit]


def running_processes(proc_dir):
    """{pid: command name} of the processes running now (/proc/<pid>/comm, read once, at most 64 bytes).

    A process that exits mid-read, or a comm that cannot be read, is skipped; bytes that are not UTF-8
    are replaced, so nothing a process names itself can raise here.
    """
    result = {}
    try:
        entries = os.listdir(proc_dir)
    except (OSError, ValueError):
        return result
    for entry in entries:
        if not entry.isdigit() or not entry.isascii():
            continue
        try:
            with open(os.path.join(proc_dir, entry, 'comm'), 'rb') as handle:
                data = handle.read(64)
        except (OSError, ValueError):
            continue
        result[int(entry)] = data.decode('utf-8', 'replace').strip()
    return result


def unit_state(root, unit, skipped=None):
    """(enabled wants-symlinks, masked path or None) of a unit, from the file system (no systemctl)."""
    masked = None
    for directory in ('etc/systemd/system', 'run/systemd/system'):
        path = _path(root, os.path.join(directory, unit))
        try:
            if os.path.islink(path) and os.readlink(path) == '/dev/null':
                masked = path
        except (OSError, ValueError):
            pass
    enabled = []
    for directory in SYSTEMD_DIRS:
        base = _path(root, directory)
        for name in _listdir(base, skipped=skipped):
            if not name.endswith('.wants'):
                continue
            link = os.path.join(base, name, unit)
            if os.path.lexists(link):
                enabled.append(link)
    return enabled, masked


def parse_assignments(text):
    """KEY=value lines of a shell-style defaults file, as data (never sourced): {KEY: value}.

    Comments, blank lines, `export` and quotes are handled; anything else (commands, expansions) is ignored.
    The last assignment of a key wins, as in the shell.
    """
    result = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('export '):
            line = line[len('export '):].strip()
        match = re.match(r'([A-Za-z_][A-Za-z0-9_]*)=(.*)\Z', line)
        if not match:
            continue
        value = match.group(2).strip()
        if value[:1] in ('"', "'"):
            end = value.find(value[0], 1)
            value = value[1:end] if end > 0 else value[1:]
        else:
            value = value.split('#', 1)[0].strip()
        result[match.group(1)] = value
    return result


# ---------------------------------------------------------------------------------------------------
# One finding per writer

class Finding:
    """A writer found on this host: which knobs it writes here, and the evidence."""

    def __init__(self, writer):
        self.writer = writer
        self.knobs = list(writer.knobs)
        self.evidence = []
        self.turns_on = writer.turns_on

    def writes_run(self, value):
        """It writes value (text) to run: whether that starts ksmd decides turns_on (one such line is enough)."""
        self.add_knob('run')
        if value.strip() not in RUN_OFF:
            self.turns_on = True

    def add(self, text):
        if text not in self.evidence and len(self.evidence) < MAX_EVIDENCE:
            self.evidence.append(text)

    def add_knob(self, knob):
        if knob not in self.knobs:
            self.knobs.append(knob)

    def as_dict(self):
        writer = self.writer
        return {'name': writer.name, 'knobs': list(self.knobs), 'when': writer.when, 'evidence': list(self.evidence),
                'ours': writer.ours, 'remedy': writer.remedy, 'turns_on': self.turns_on}


class Scan:
    """Every other writer found under root. find() runs it; .found lists Findings, .skipped what bounds left out."""

    def __init__(self, root=None, processes=None):
        self.root = root or ROOT
        self.processes = processes
        self.findings = {}
        self.skipped = []
        self.tuned_turns_on = False     # a [sysfs] line of the active TuneD profiles writes run=1

    def finding(self, name):
        if name not in self.findings:
            self.findings[name] = Finding(BY_NAME[name])
        return self.findings[name]

    def run(self):
        self.scan_processes()
        self.scan_units()
        self.scan_qemu_kvm()
        self.scan_tuned()
        self.scan_tmpfiles()
        self.scan_sysfsutils()
        self.scan_ovirt_files()
        self.scan_tuner_state()
        self.scan_memory_ksm()
        return self

    @property
    def found(self):
        return [self.findings[writer.name] for writer in WRITERS if writer.name in self.findings]

    # -- processes and units ------------------------------------------------------------------------
    def scan_processes(self):
        processes = self.processes
        if processes is None:
            processes = running_processes(_path(self.root, 'proc'))
        for pid in sorted(processes):
            name = PROCESS_NAMES.get(processes[pid])
            if name:
                self.finding(name).add('process %s (pid %d)' % (processes[pid], pid))

    def scan_units(self):
        for unit in sorted(UNIT_NAMES):
            if unit == 'qemu-kvm.service':
                continue     # judged with its defaults file, by scan_qemu_kvm
            enabled, masked = unit_state(self.root, unit, self.skipped)
            if enabled and not masked:
                finding = self.finding(UNIT_NAMES[unit])
                for link in enabled:
                    finding.add('%s enabled (%s)' % (unit, link))

    def scan_qemu_kvm(self):
        enabled, masked = unit_state(self.root, 'qemu-kvm.service', self.skipped)
        if not enabled or masked:
            return
        finding = self.finding('qemu-kvm.service')
        for link in enabled:
            finding.add('qemu-kvm.service enabled (%s)' % link)
        path = _path(self.root, QEMU_KVM_DEFAULTS)
        text = _read(path)
        if text is None:
            finding.add('%s absent or unreadable: the script decides alone' % path)
            return
        values = parse_assignments(text)
        ksm_enabled = values.get('KSM_ENABLED')
        if ksm_enabled is None:
            finding.add('%s sets no KSM_ENABLED' % path)
            return
        shown = ksm_enabled if re.match(r'[A-Za-z0-9]{1,8}\Z', ksm_enabled) else repr(ksm_enabled[:40])
        finding.add('%s: KSM_ENABLED=%s' % (path, shown))
        sleep = values.get('SLEEP_MILLISECS')
        if ksm_enabled == '0':
            finding.knobs = ['run']     # off: only run=0 is written
            finding.turns_on = False
        elif sleep is not None and re.match(r'[0-9]{1,10}\Z', sleep):
            finding.add('%s: SLEEP_MILLISECS=%s' % (path, sleep))

    # -- TuneD ---------------------------------------------------------------------------------------
    def tuned_profile_file(self, profile):
        for directory in TUNED_PROFILE_DIRS:
            path = _path(self.root, os.path.join(directory, profile, 'tuned.conf'))
            if os.path.isfile(path):
                return path
        return None

    def scan_tuned(self):
        active_path = _path(self.root, TUNED_ACTIVE_PROFILE)
        active = _read(active_path, 4096)
        marker = _path(self.root, TUNED_KSM_MASKED)
        evidence = []
        knobs = []
        if active is not None:
            profiles = [name for name in active.split() if _PROFILE_NAME.fullmatch(name)]
            seen = set()
            for profile in profiles[:8]:
                self.tuned_profile(profile, 0, seen, evidence, knobs)
            if evidence:
                evidence.insert(0, '%s: %s' % (active_path, ' '.join(profiles[:8])))
        if os.path.exists(marker):
            evidence.append('%s exists (TuneD masked ksm.service and ksmtuned.service)' % marker)
            if 'run' not in knobs:
                knobs.insert(0, 'run')
        if evidence:
            finding = self.finding('tuned')
            finding.knobs = knobs or ['run']
            finding.turns_on = self.tuned_turns_on
            for line in evidence:
                finding.add(line)

    def tuned_profile(self, profile, depth, seen, evidence, knobs):
        if profile in seen or depth > MAX_INCLUDE_DEPTH:
            return
        seen.add(profile)
        if profile in TUNED_KSM_DISABLERS:
            evidence.append('TuneD profile %s switches KSM off (run=2, ksm units masked)' % profile)
            if 'run' not in knobs:
                knobs.insert(0, 'run')
        path = self.tuned_profile_file(profile)
        if path is None:
            return
        section = None
        includes = []
        for number, line in enumerate((_read(path) or '').splitlines(), 1):
            line = line.strip()
            if not line or line[0] in '#;':
                continue
            if line.startswith('[') and line.endswith(']'):
                section = line[1:-1].strip()
                continue
            key, sep, value = line.partition('=')
            key, value = key.strip(), value.strip()
            if not sep:
                continue
            if section == 'main' and key == 'include':
                includes.extend(name for name in re.split(r'[\s,]+', value) if _PROFILE_NAME.fullmatch(name))
            elif section is not None and key.startswith(KSM_SYSFS):
                knob = key[len(KSM_SYSFS):]
                if _KNOB_NAME.fullmatch(knob) and knob not in knobs:
                    knobs.append(knob)
                if knob == 'run' and value not in RUN_OFF:
                    self.tuned_turns_on = True
                evidence.append('%s:%d: %s' % (path, number, line[:200]))
        for include in includes[:16]:
            self.tuned_profile(include, depth + 1, seen, evidence, knobs)

    # -- boot-time files -----------------------------------------------------------------------------
    def scan_tmpfiles(self):
        files = {}
        for directory in TMPFILES_DIRS:   # /etc overrides /run overrides /usr/lib (same file name)
            base = _path(self.root, directory)
            for name in _listdir(base, skipped=self.skipped):
                if name.endswith('.conf') and name not in files:
                    files[name] = os.path.join(base, name)
        for name in sorted(files):
            text = _read(files[name])
            for number, line in enumerate((text or '').splitlines(), 1):
                fields = line.split()
                if len(fields) < 2 or not fields[0].startswith('w') or not fields[1].startswith(KSM_SYSFS):
                    continue
                if fields[0].strip('w+!-=~^') != '':
                    continue
                finding = self.finding('tmpfiles.d')
                knob = fields[1][len(KSM_SYSFS):]
                finding.add_knob(knob if _KNOB_NAME.fullmatch(knob) else knob[:64])
                if knob == 'run' and len(fields) > 6:    # w PATH MODE USER GROUP AGE ARGUMENT
                    finding.writes_run(' '.join(fields[6:]))
                finding.add('%s:%d: %s' % (files[name], number, ' '.join(fields)[:200]))

    def scan_sysfsutils(self):
        paths = [_path(self.root, 'etc/sysfs.conf')]
        base = _path(self.root, 'etc/sysfs.d')
        paths.extend(os.path.join(base, name) for name in _listdir(base, skipped=self.skipped) if name.endswith('.conf'))
        for path in paths:
            for number, line in enumerate((_read(path) or '').splitlines(), 1):
                key, sep, value = line.split('#', 1)[0].partition('=')
                key = key.strip()
                if not sep or key.startswith(('mode ', 'owner ')):
                    continue
                key = key.lstrip('/')
                if key.startswith('sys/'):
                    key = key[len('sys/'):]
                if not key.startswith('kernel/mm/ksm/'):
                    continue
                finding = self.finding('sysfsutils')
                knob = key[len('kernel/mm/ksm/'):]
                finding.add_knob(knob if _KNOB_NAME.fullmatch(knob) else knob[:64])
                if knob == 'run':
                    finding.writes_run(value)
                finding.add('%s:%d: %s = %s' % (path, number, key[:100], value.strip()[:100]))

    def scan_ovirt_files(self):
        for relative in OVIRT_FILES:
            path = _path(self.root, relative)
            if os.path.isfile(path):
                self.finding('ovirt-mom').add('%s exists' % path)

    def scan_tuner_state(self):
        path = _path(self.root, TUNER_STATE)
        if os.path.isfile(path):
            self.finding('samepage-ksm-tuner').add('%s exists (the tuner is running)' % path)
        unit = _path(self.root, os.path.join('etc/systemd/system', TUNER_UNIT))
        if os.path.isfile(unit) and 'samepage-ksm-tuner' in self.findings:
            self.finding('samepage-ksm-tuner').add('%s installed' % unit)

    # -- MemoryKSM= ----------------------------------------------------------------------------------
    def scan_memory_ksm(self):
        seen_dirs = set()
        looked = 0
        too_big = []
        unreadable = 0
        stopped = False
        for directory in SYSTEMD_DIRS:
            base = _path(self.root, directory)
            try:
                real = os.path.realpath(base)
            except (OSError, ValueError):
                continue
            if real in seen_dirs or not os.path.isdir(base):
                continue      # /lib -> /usr/lib on merged-/usr systems: read once
            seen_dirs.add(real)
            candidates = []
            for name in _listdir(base, MAX_UNIT_FILES + 1, self.skipped):
                if name.endswith('.d'):
                    dropins = os.path.join(base, name)
                    candidates.extend((name[:-2], os.path.join(dropins, conf)) for conf in _listdir(dropins, 64, self.skipped)
                                      if conf.endswith('.conf'))
                elif '.' in name and not name.endswith('.wants') and not name.endswith('.requires'):
                    candidates.append((name, os.path.join(base, name)))
            for unit, path in candidates:
                if looked >= MAX_UNIT_FILES:
                    stopped = True
                    break
                looked += 1
                try:
                    if os.path.islink(path) and os.readlink(path) == '/dev/null':
                        continue
                    if os.path.getsize(path) > MAX_FILE_BYTES:
                        too_big.append(path)
                        continue
                except (OSError, ValueError):
                    unreadable += 1
                    continue
                text = _read(path)
                if text is None:
                    unreadable += 1
                    continue
                if _MEMORY_KSM.search(text) and _UNIT_NAME.fullmatch(unit):
                    self.finding('systemd MemoryKSM=').add('%s (%s): MemoryKSM=yes' % (unit, path))
        if stopped:
            self.skipped.append('MemoryKSM= scan stopped after %d unit files (limit)' % MAX_UNIT_FILES)
        if too_big:
            self.skipped.append('MemoryKSM= scan skipped %d unit files larger than %d bytes: %s'
                                % (len(too_big), MAX_FILE_BYTES, ', '.join(too_big[:5])))
        if unreadable:
            self.skipped.append('MemoryKSM= scan could not read %d unit files' % unreadable)


def find(root=None, processes=None):
    """The Scan of every other writer of KSM knobs under root (default ROOT): .found and .skipped."""
    return Scan(root, processes).run()


def short_form(findings, names=None):
    """{writer: [knobs]} of the writers that are not the collection's own and write knobs (among names)."""
    result = {}
    for finding in findings:
        if finding.writer.ours:
            continue
        knobs = [knob for knob in finding.knobs if names is None or knob in names]
        if knobs:
            result[finding.writer.name] = knobs
    return result


def running(names, root=None, processes=None):
    """[(Finding, [knobs])] of the writers running now as processes that write some of names ([knob]): they
    write them again within their interval, whatever a task has just done. Reads /proc only (cheap)."""
    scan = Scan(root, processes)
    scan.scan_processes()
    result = []
    for finding in scan.found:
        knobs = [knob for knob in finding.knobs if knob in names]
        if knobs:
            result.append((finding, knobs))
    return result


def overwriting(findings, applied):
    """[(Finding, [knobs])] of the writers that will overwrite some of the knobs a task set ({knob: value}).

    A writer that always writes the value the task set (ksm.service: run=1) overwrites nothing.
    """
    result = []
    for finding in findings:
        values = finding.writer.values
        knobs = [knob for knob in finding.knobs
                 if knob in applied and (knob not in values or values[knob] != applied[knob])]
        if knobs:
            result.append((finding, knobs))
    return result


def warning(finding, knobs):
    """What a task that set knobs is told about a writer that will overwrite them, with the way out."""
    writer = finding.writer
    owner = "the collection's own tuner" if writer.ours else writer.name
    return ('%s writes %s %s (%s): the values this task set for %s will be overwritten %s. Otherwise: %s.'
            % (owner, ', '.join(finding.knobs), writer.when, '; '.join(finding.evidence[:3]), ', '.join(knobs),
               'at its next interval' if writer.when == EVERY_INTERVAL else writer.when, writer.remedy))


def unmerge_warning(finding):
    """What a task that unmerged is told about a running writer of run (from running()), with the way out."""
    writer = finding.writer
    return ('%s is running and rewrites run %s (%s): it can start ksmd again and pages can be merged again. To '
            'prevent that: %s.' % (writer.name, writer.when, '; '.join(finding.evidence[:3]), writer.remedy))
