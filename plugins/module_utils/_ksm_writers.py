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
TUNED_PROFILE_MODE = 'etc/tuned/profile_mode'
TUNED_PID_FILE = 'run/tuned/tuned.pid'
# The profile that neutralise_tuned() appends to the active ones: it drops the KSM options of the profiles
# before it (TuneD's `drop=` of a section, 2.13 and later), so TuneD leaves /sys/kernel/mm/ksm alone.
TUNED_GUARD = 'samepage-ksm-guard'
TUNED_KSM_MASKED = 'var/lib/tuned/ksm-masked'
# TuneD profiles whose scripts switch KSM off (functions: disable_ksm masks ksm/ksmtuned, writes run=2).
# realtime-virtual-host is not one: it writes run=2 through a [sysfs] line, which is read as such.
TUNED_KSM_DISABLERS = ('cpu-partitioning', 'cpu-partitioning-powersave')
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
           'set KSM_ENABLED (1, 0) and SLEEP_MILLISECS in /etc/default/qemu-kvm to the values you want (the '
           'samepage.ksm.ksm role does it with ksm_neutralise_writers: [qemu-kvm.service])',
           description="Ubuntu's qemu-kvm.service: writes run (KSM_ENABLED in /etc/default/qemu-kvm: 1, 0, or AUTO: "
                       '1 on bare metal, 0 in a VM) and sleep_millisecs (SLEEP_MILLISECS) when KSM is enabled'),
    Writer('enable-ksm.service', ('run', 'sleep_millisecs'), AT_BOOT,
           'set hardware.ksm.enable (and hardware.ksm.sleep) in the NixOS configuration to the values you want',
           description="NixOS's hardware.ksm: writes run=1 and optionally sleep_millisecs at boot"),
    Writer('tuned', ('run',), PROFILE_SWITCH,
           'switch the TuneD profile (tuned-adm profile ...) or remove its [sysfs] /sys/kernel/mm/ksm lines (the '
           'samepage.ksm.ksm role drops them with ksm_neutralise_writers: [tuned], through the profile %s '
           'appended to the active ones)' % 'samepage-ksm-guard',
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


def _assignment(line):
    """The match (KEY, rest) of a KEY=value line of a shell-style defaults file, or None."""
    line = line.strip()
    if line.startswith('export '):
        line = line[len('export '):].strip()
    return re.match(r'([A-Za-z_][A-Za-z0-9_]*)=(.*)\Z', line)


def parse_assignments(text):
    """KEY=value lines of a shell-style defaults file, as data (never sourced): {KEY: value}.

    Comments, blank lines, `export` and quotes are handled; anything else (commands, expansions) is ignored.
    The last assignment of a key wins, as in the shell.
    """
    result = {}
    for line in text.splitlines():
        match = _assignment(line)
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
# TuneD: what the active profiles write to /sys/kernel/mm/ksm, merged the way TuneD merges them

class TunedOption:
    """One /sys/kernel/mm/ksm option of a TuneD plugin section (sysfs) that the merged profile keeps."""

    __slots__ = ('section', 'type', 'key', 'knob', 'evidence', 'value')

    def __init__(self, section, unit_type, key, knob, evidence, value=''):
        self.section = section
        self.type = unit_type
        self.key = key
        self.knob = knob
        self.evidence = evidence
        self.value = value          # the value the profile writes (text, as in tuned.conf)


class TunedState:
    """The active TuneD profiles (as listed, bounded), the KSM options their merge keeps ({(section, key):
    TunedOption}, in the order TuneD applies them) and the evidence of profiles whose scripts switch KSM off.
    guard_drops is what the profile TUNED_GUARD drops, when it is active."""

    def __init__(self):
        self.active = []
        self.options = {}
        self.disablers = []
        self.guard_drops = {}


def tuned_profile_file(root, profile):
    """The tuned.conf of a profile: /etc overrides /usr/lib, and the profiles/ layout (TuneD 2.23+) the flat one."""
    for directory in TUNED_PROFILE_DIRS:
        path = _path(root, os.path.join(directory, profile, 'tuned.conf'))
        if os.path.isfile(path):
            return path
    return None


def _tuned_sections(path):
    """[(section, {key: (value, line number, line)})] of a tuned.conf, read as data (ini-like)."""
    sections = []
    current = None
    for number, line in enumerate((_read(path) or '').splitlines(), 1):
        line = line.strip()
        if not line or line[0] in '#;':
            continue
        if line.startswith('[') and line.endswith(']'):
            current = (line[1:-1].strip(), {})
            sections.append(current)
            continue
        key, sep, value = line.partition('=')
        if sep and current is not None:
            current[1][key.strip()] = (value.strip(), number, line)
    return sections


def _tuned_events(root, profile, depth, seen, events):
    """Append what a profile does to KSM options, its includes first (TuneD merges them before it):
    ('set', section, type, key, knob, evidence), ('drop', section, key) and ('disabler', evidence)."""
    if profile in seen or depth > MAX_INCLUDE_DEPTH:
        return
    seen.add(profile)
    path = tuned_profile_file(root, profile)
    sections = _tuned_sections(path) if path else []
    for name, options in sections:
        if name == 'main' and 'include' in options:
            includes = [item for item in re.split(r'[\s,;]+', options['include'][0]) if _PROFILE_NAME.fullmatch(item)]
            for include in includes[:16]:
                _tuned_events(root, include, depth + 1, seen, events)
    if profile in TUNED_KSM_DISABLERS:
        events.append(('disabler', 'TuneD profile %s switches KSM off in its script (run=2, ksm units masked)'
                       % profile))
    for name, options in sections:
        if name in ('main', 'variables'):
            continue
        unit_type = options['type'][0] if 'type' in options else name
        if 'drop' in options:
            for key in re.split(r'\s*[,;]\s*', options['drop'][0]):
                events.append(('drop', name, key))
        for key, (value, number, line) in options.items():
            if key.startswith(KSM_SYSFS):
                knob = key[len(KSM_SYSFS):]
                events.append(('set', name, unit_type, key, knob if _KNOB_NAME.fullmatch(knob) else knob[:64],
                               '%s:%d: %s' % (path, number, line[:200]), value))


def tuned_state(root=None, skip=()):
    """The TunedState of the active profiles under root, leaving out the profiles named in skip."""
    root = root or ROOT
    state = TunedState()
    text = _read(_path(root, TUNED_ACTIVE_PROFILE), 4096)
    if text is None:
        return state
    state.active = [name for name in text.split() if _PROFILE_NAME.fullmatch(name)][:8]
    for profile in state.active:
        if profile in skip:
            continue
        events = []
        _tuned_events(root, profile, 0, set(), events)
        for event in events:
            if event[0] == 'disabler':
                if event[1] not in state.disablers:
                    state.disablers.append(event[1])
            elif event[0] == 'drop':
                dropped = state.options.pop((event[1], event[2]), None)
                if profile == TUNED_GUARD and dropped is not None:
                    state.guard_drops[(event[1], event[2])] = dropped
            else:
                dummy, section, unit_type, key, knob, evidence, value = event
                state.options.pop((section, key), None)     # moved to the end: applied last
                state.options[(section, key)] = TunedOption(section, unit_type, key, knob, evidence, value)
    return state


# ---------------------------------------------------------------------------------------------------
# One finding per writer

class Finding:
    """A writer found on this host: which knobs it writes here, and the evidence."""

    def __init__(self, writer):
        self.writer = writer
        self.knobs = list(writer.knobs)
        self.values = dict(writer.values)     # knobs it is known to write with one value here
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
            finding.values = {'run': 0}
        elif sleep is not None and re.match(r'[0-9]{1,10}\Z', sleep):
            finding.add('%s: SLEEP_MILLISECS=%s' % (path, sleep))
            if ksm_enabled == '1':
                finding.values = {'run': 1, 'sleep_millisecs': int(sleep)}
        elif ksm_enabled == '1':
            finding.values = {'run': 1}

    # -- TuneD ---------------------------------------------------------------------------------------
    def scan_tuned(self):
        active_path = _path(self.root, TUNED_ACTIVE_PROFILE)
        marker = _path(self.root, TUNED_KSM_MASKED)
        evidence = []
        knobs = []
        state = tuned_state(self.root)
        if state.active:
            for line in state.disablers:
                evidence.append(line)
                if 'run' not in knobs:
                    knobs.insert(0, 'run')
            for option in state.options.values():
                if option.knob not in knobs:
                    knobs.append(option.knob)
                if option.knob == 'run' and option.value.strip() not in RUN_OFF:
                    self.tuned_turns_on = True
                evidence.append(option.evidence)
            if evidence:
                evidence.insert(0, '%s: %s' % (active_path, ' '.join(state.active)))
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
        values = finding.values
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


# ---------------------------------------------------------------------------------------------------
# Neutralising the writers that can be switched off safely (module samepage.ksm.ksm_writers)

# Writers neutralise() knows how to switch off without taking anything else away from the host.
NEUTRALISABLE = ('qemu-kvm.service', 'tuned')


class WriterError(Exception):
    """A writer that cannot be neutralised safely, or a file that cannot be edited without losing data."""

    def __init__(self, msg, writer=None):
        super().__init__(msg)
        self.msg = msg
        self.writer = writer


class FileChange:
    """One file a neutralisation writes: its text before (None: absent) and after."""

    __slots__ = ('path', 'before', 'after')

    def __init__(self, path, before, after):
        self.path = path
        self.before = before
        self.after = after

    @property
    def changed(self):
        return self.before != self.after


class Neutralisation:
    """What neutralising one writer takes: the file changes (in order), what it means, and for TuneD the
    active profiles to switch to (tuned-adm, when TuneD runs)."""

    def __init__(self, name, summary, changes=(), tuned_profiles=None):
        self.name = name
        self.summary = summary
        self.changes = [change for change in changes if change.changed]
        self.tuned_profiles = tuned_profiles

    @property
    def changed(self):
        return bool(self.changes)


def read_whole(path, writer):
    """The whole text of a file that is going to be edited, None when it does not exist; WriterError when it
    cannot be read whole as UTF-8 text (an edit would lose what could not be read)."""
    try:
        with open(path, 'rb') as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise WriterError('Cannot read %s to neutralise %s: %s' % (path, writer, err), writer)
    if len(data) > MAX_FILE_BYTES:
        raise WriterError('%s is larger than %d bytes: not edited to neutralise %s (edit it by hand)'
                          % (path, MAX_FILE_BYTES, writer), writer)
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError:
        raise WriterError('%s is not UTF-8 text: not edited to neutralise %s (edit it by hand)' % (path, writer),
                          writer)


def set_assignments(text, wanted, note):
    """text of a shell-style defaults file with each KEY of wanted ({KEY: value}) assigned value: the line
    that assigns it last (the one the shell keeps) is replaced, or `KEY=value` is appended after note (a
    comment) when no line assigns it. A key that already has its value is left as it is written."""
    current = parse_assignments(text)
    lines = text.splitlines(True)
    appended = []
    for key, value in wanted.items():
        if current.get(key) == value:
            continue
        last = None
        for index, line in enumerate(lines):
            match = _assignment(line)
            if match and match.group(1) == key:
                last = index
        if last is None:
            appended.append('%s=%s\n' % (key, value))
        else:
            ending = '\n' if lines[last].endswith('\n') else ''
            lines[last] = '%s=%s%s' % (key, value, ending)
    if appended:
        if lines and not lines[-1].endswith('\n'):
            lines[-1] += '\n'
        lines.append('# %s\n' % note)
        lines.extend(appended)
    result = ''.join(lines)
    parsed = parse_assignments(result)
    if any(parsed.get(key) != value for key, value in wanted.items()):     # never write what does not read back
        raise WriterError('Cannot set %s in a way that reads back' % ', '.join(sorted(wanted)))
    return result


def neutralise_qemu_kvm(root, run, sleep_millisecs=None):
    """Ubuntu's qemu-kvm.service made to write what the caller wants: KSM_ENABLED=1 (run=1; with SLEEP_MILLISECS
    when sleep_millisecs is given) or 0 (run=0) in /etc/default/qemu-kvm, the rest of the file kept.

    No value of KSM_ENABLED makes the script leave run alone (AUTO decides by virtualisation), so the
    writer is made to agree rather than silenced; the unit also loads the KVM modules, so it stays enabled.
    None when the unit is not enabled (it writes nothing at boot).
    """
    enabled, masked = unit_state(root or ROOT, 'qemu-kvm.service')
    if not enabled or masked:
        return None
    path = _path(root, QEMU_KVM_DEFAULTS)
    before = read_whole(path, 'qemu-kvm.service')
    wanted = {'KSM_ENABLED': '1' if run else '0'}
    if run and sleep_millisecs is not None:
        wanted['SLEEP_MILLISECS'] = str(int(sleep_millisecs))
    try:
        after = set_assignments(before or '', wanted, 'Set by samepage.ksm: the KSM settings of the ksm role')
    except WriterError as err:
        raise WriterError('%s in %s: %s' % (err.msg, path, 'edit it by hand'), 'qemu-kvm.service')
    summary = 'qemu-kvm.service writes %s at boot (%s)' % (
        ', '.join('%s=%s' % (knob, value) for knob, value in
                  (('run', wanted['KSM_ENABLED']), ('sleep_millisecs', wanted.get('SLEEP_MILLISECS'))) if value),
        ' '.join('%s=%s' % item for item in wanted.items()) + ' in ' + path)
    return Neutralisation('qemu-kvm.service', summary, [FileChange(path, before, after)])


def tuned_guard_path(root):
    """Where the guard profile lives: the directory of user profiles of the TuneD installed (/etc/tuned/profiles
    since TuneD 2.23, /etc/tuned before), or where it already is."""
    existing = _path(root, os.path.join('etc/tuned/profiles', TUNED_GUARD, 'tuned.conf'))
    flat = _path(root, os.path.join('etc/tuned', TUNED_GUARD, 'tuned.conf'))
    for path in (existing, flat):
        if os.path.isfile(path):
            return path
    if os.path.isdir(_path(root, 'usr/lib/tuned/profiles')) or os.path.isdir(_path(root, 'etc/tuned/profiles')):
        return existing
    return flat


def render_guard(options):
    """The guard profile: one section per plugin section of the active profiles that sets KSM options,
    with the plugin type repeated (TuneD merges a section's type from the newest profile) and those options
    dropped."""
    sections = {}
    for option in options:
        sections.setdefault((option.section, option.type), [])
        if option.key not in sections[(option.section, option.type)]:
            sections[(option.section, option.type)].append(option.key)
    lines = ['# Written by samepage.ksm (samepage.ksm.ksm_writers); do not edit.',
             '# Listed after the other active TuneD profiles, it drops their /sys/kernel/mm/ksm settings, so that',
             '# TuneD leaves KSM to samepage.ksm. Remove it from the active profiles (tuned-adm profile ...) to undo.',
             '[main]', 'summary=Leave /sys/kernel/mm/ksm to samepage.ksm', '']
    for (section, unit_type), keys in sorted(sections.items()):
        lines.append('[%s]' % section)
        lines.append('type=%s' % unit_type)
        lines.append('drop=%s' % ','.join(keys))
        lines.append('')
    return '\n'.join(lines)


def neutralise_tuned(root):
    """TuneD made to leave /sys/kernel/mm/ksm alone: the guard profile (TUNED_GUARD) that drops the KSM options
    of the active profiles, appended to them (/etc/tuned/active_profile, profile_mode manual). /usr/lib/tuned
    is never edited, and the active profiles keep everything else they set.

    None when no TuneD profile is active. WriterError for what a profile does in a script (cpu-partitioning
    masks the KSM units and unmerges): that cannot be dropped without losing the profile's purpose.
    """
    root = root or ROOT
    active_path = _path(root, TUNED_ACTIVE_PROFILE)
    text = read_whole(active_path, 'tuned')
    if text is None or not text.split():
        return None
    names = text.split()
    if len(names) > 8 or any(not _PROFILE_NAME.fullmatch(name) for name in names):
        raise WriterError('%s lists profiles this module does not rewrite (%s): switch the profiles by hand '
                          '(tuned-adm profile ...)' % (active_path, ' '.join(names)[:200]), 'tuned')
    state = tuned_state(root, skip=(TUNED_GUARD,))
    marker = _path(root, TUNED_KSM_MASKED)
    blockers = list(state.disablers)
    if os.path.exists(marker):
        blockers.append('%s exists (TuneD masked ksm.service and ksmtuned.service)' % marker)
    if blockers:
        raise WriterError('TuneD cannot be neutralised here: %s. Its profile scripts switch KSM off, which no '
                          'profile can drop without losing what the profile is for; switch to another profile '
                          '(tuned-adm profile ...), then unmask ksm.service and ksmtuned.service' % '; '.join(blockers),
                          'tuned')
    options = list(state.options.values())
    if not options:
        return None
    profiles = [name for name in names if name != TUNED_GUARD] + [TUNED_GUARD]
    guard = tuned_guard_path(root)
    changes = [FileChange(guard, read_whole(guard, 'tuned'), render_guard(options)),
               FileChange(active_path, text, ' '.join(profiles) + '\n')]
    mode_path = _path(root, TUNED_PROFILE_MODE)
    mode = read_whole(mode_path, 'tuned')
    if (mode or '').strip() != 'manual':
        changes.append(FileChange(mode_path, mode, 'manual\n'))     # auto mode would choose its own profile
    summary = 'TuneD profiles %s: %s dropped by %s' % (' '.join(profiles), ', '.join(
        sorted(set(option.knob for option in options))), guard)
    return Neutralisation('tuned', summary, changes, tuned_profiles=profiles)


def tuned_running(root=None):
    """Whether the TuneD daemon runs (its PID file), so that a switch of profiles goes through tuned-adm."""
    return os.path.isfile(_path(root, TUNED_PID_FILE))


def neutralise(names, root=None, run=True, sleep_millisecs=None):
    """[Neutralisation] of the writers named (of NEUTRALISABLE) found on this host, planned from what is read
    now and written by nobody yet. Every plan is made before anything is written, so one writer that cannot
    be neutralised fails the task with nothing changed (WriterError)."""
    plans = []
    for name in names:
        if name == 'qemu-kvm.service':
            plan = neutralise_qemu_kvm(root, run, sleep_millisecs)
        elif name == 'tuned':
            plan = neutralise_tuned(root)
        else:
            raise WriterError('%s cannot be neutralised: expected one of %s' % (name, ', '.join(NEUTRALISABLE)), name)
        if plan is not None:
            plans.append(plan)
    return plans
