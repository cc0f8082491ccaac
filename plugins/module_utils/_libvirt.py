# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""libvirt domains that must not share memory through KSM: ``<memoryBacking><nosharepages/></memoryBacking>``.

libvirt turns that element into QEMU's ``-machine ...,mem-merge=off``: QEMU then never marks the guest's RAM
mergeable, so KSM never merges it, whatever /sys/kernel/mm/ksm/run says. It takes effect when QEMU starts:
a running domain keeps the setting it was started with until it is shut down and started again.

Everything goes through libvirt's own interface, the ``virsh`` client (package libvirt-clients on Debian and
Ubuntu, libvirt-client on RHEL and Fedora): ``list``, ``dumpxml --inactive`` for the persistent definition,
``dumpxml`` for the running one, ``define`` of the edited definition (never a file under /etc/libvirt),
``shutdown``/``destroy``/``start``/``domstate`` to restart. Commands are argument lists run with LC_ALL=C
(never a shell) through a ``run_command`` callable with AnsibleModule.run_command's signature, so tests can
hand in a fake virsh that answers as the real one does.

Domain names and patterns are checked before anything runs: names with shell metacharacters (and other
characters no sane domain name has) are refused, although no shell ever sees them.

Private to samepage.ksm (leading underscore). Standard library only (plus the collection's _errors),
Python 3.8+ syntax.
"""

import fnmatch
import io
import os
import re
import tempfile
import time
import xml.etree.ElementTree as ET

from ansible_collections.samepage.ksm.plugins.module_utils._errors import SamepageError

VIRSH = 'virsh'
PACKAGES = 'libvirt-clients on Debian and Ubuntu, libvirt-client on RHEL, Fedora and SUSE, libvirt on Arch'
ENVIRONMENT = {'LC_ALL': 'C', 'LANG': 'C'}
DEFAULT_URI = 'qemu:///system'
SHUTDOWN_POLL = 1.0

# A domain name: letters and digits of any script, and . _ - + : @ (libvirt itself refuses only '/' and
# line breaks, but a name with blanks or shell metacharacters in a playbook is far likelier a templating slip
# or an injection than a real domain). A pattern may also use fnmatch's * ? [ ] (and ! right after [).
_NAME = re.compile(r'[\w.+:@-]+', re.UNICODE)
_PATTERN_CHARS = '*?[]!'
_URI = re.compile(r'[A-Za-z][A-Za-z0-9+.-]*:/[^\s\x00-\x1f\x7f]*')


class LibvirtError(SamepageError):
    """virsh is missing or refused, or an option names what is not there: the message says which and why."""


# ---------------------------------------------------------------------------------------------------
# What the task is asked: domain names, patterns, the connection URI

def check_selectors(selectors, option='domains'):
    """The names and patterns of option `domains`, checked: a list of texts, or LibvirtError naming the bad one."""
    if not selectors:
        raise LibvirtError('%s is empty: name at least one domain or pattern' % option, option=option)
    problems = []
    for selector in selectors:
        if not isinstance(selector, str) or not selector:
            problems.append('%r is empty' % (selector,))
            continue
        bad = [char for char in selector if not (_NAME.fullmatch(char) or char in _PATTERN_CHARS)]
        if bad:
            problems.append('%r contains %s' % (selector, ', '.join(sorted(set(repr(char) for char in bad)))))
        elif '!' in selector.replace('[!', ''):
            problems.append("%r contains '!' outside a bracket expression ([!...])" % selector)
    if problems:
        raise LibvirtError(
            'Invalid domain name or pattern in %s: %s. Domain names here are letters, digits and . _ - + : @; '
            'patterns also use * ? [ ] (shell-style, as fnmatch). Shell metacharacters, blanks and control '
            'characters are refused; nothing was changed.' % (option, '; '.join(problems)), option=option)
    return list(selectors)


def is_pattern(selector):
    return any(char in selector for char in '*?[')


def check_uri(uri, option='uri'):
    """A libvirt connection URI (driver://host/path?params), or LibvirtError naming the option."""
    if not isinstance(uri, str) or not _URI.fullmatch(uri):
        raise LibvirtError('Invalid value %r for %s: expected a libvirt connection URI such as qemu:///system '
                           '(no blanks or control characters)' % (uri, option), option=option)
    return uri


class Inventory:
    """The domains a connection has: persistent ones (with a definition) and active ones (running or paused)."""

    def __init__(self, persistent, active):
        self.persistent = list(persistent)
        self.active = list(active)
        # A transient domain exists only while it runs and has no persistent definition to edit.
        self.transient = [name for name in self.active if name not in self.persistent]

    def names(self):
        return sorted(set(self.persistent) | set(self.active))


def select(selectors, inventory):
    """The persistent domains the selectors name, sorted; LibvirtError (nothing changed) naming every name that
    is unknown, every pattern that matches nothing and every transient domain matched."""
    known = inventory.names()
    chosen = []
    unknown, empty = [], []
    for selector in selectors:
        if is_pattern(selector):
            matched = [name for name in known if fnmatch.fnmatchcase(name, selector)]
            if not matched:
                empty.append(selector)
        else:
            matched = [selector] if selector in known else []
            if not matched:
                unknown.append(selector)
        chosen.extend(name for name in matched if name not in chosen)
    transient = [name for name in chosen if name in inventory.transient]
    problems = []
    if unknown:
        problems.append('no domain named %s' % ', '.join(repr(name) for name in unknown))
    if empty:
        problems.append('no domain matches %s' % ', '.join(repr(pattern) for pattern in empty))
    if transient:
        problems.append('%s transient (running without a persistent definition, which is what carries '
                        'nosharepages): define %s persistently first (virsh dumpxml NAME > FILE; virsh define FILE) '
                        'or leave %s out' % (', '.join(repr(name) for name in transient),
                                             'it' if len(transient) == 1 else 'them',
                                             'it' if len(transient) == 1 else 'them'))
    if problems:
        raise LibvirtError('%s (domains known to libvirt: %s). Nothing was changed.' % (
            '; '.join(problems), ', '.join(known) or 'none'), option='domains')
    return sorted(chosen)


class Domain:
    """One selected domain as read before anything changes: its persistent definition and what it runs with."""

    def __init__(self, name, definition, active, running):
        self.name = name
        self.definition = definition
        self.nosharepages = has_nosharepages(definition, 'definition of %s' % name)
        self.active = active
        # what the running QEMU was started with (None when the domain does not run)
        self.running = has_nosharepages(running, 'running definition of %s' % name) if active else None


def read_domains(virsh, names, inventory):
    """Domain of each name: `dumpxml --inactive`, and `dumpxml` of those that run."""
    domains = []
    for name in names:
        active = name in inventory.active
        domains.append(Domain(name, virsh.definition(name), active, virsh.running_definition(name) if active else None))
    return domains


def audit(virsh):
    """Every domain of the connection with its nosharepages, for ksm_info's report: a list of dicts sorted by name.

    persistent / active         whether it has a persistent definition / runs (or is paused)
    nosharepages                whether its persistent definition carries it (None for a transient domain)
    running_nosharepages        whether its running QEMU was started with it (None when it does not run)

    One `virsh dumpxml` per definition (two for a running persistent domain); LibvirtError when virsh cannot
    be run or answers an error.
    """
    inventory = virsh.inventory()
    report = []
    for name in inventory.names():
        persistent = name in inventory.persistent
        active = name in inventory.active
        report.append({
            'name': name,
            'persistent': persistent,
            'active': active,
            'nosharepages': has_nosharepages(virsh.definition(name), 'definition of %s' % name) if persistent else None,
            'running_nosharepages': has_nosharepages(virsh.running_definition(name), 'running definition of %s' % name)
            if active else None,
        })
    return report


# ---------------------------------------------------------------------------------------------------
# The domain definition: <memoryBacking><nosharepages/></memoryBacking>

def _parse(xml_text, what):
    try:
        return ET.fromstring(xml_text)
    except ET.ParseError as err:
        raise LibvirtError('Cannot parse the %s: %s' % (what, err))


def has_nosharepages(xml_text, what='domain definition'):
    """Whether a domain definition carries <memoryBacking><nosharepages/>."""
    return _parse(xml_text, what).find('./memoryBacking/nosharepages') is not None


def _namespaces(xml_text):
    """Prefixes the document declares ({prefix: uri}), so that a rewrite keeps them (metadata, qemu:commandline)."""
    found = {}
    try:
        for dummy, (prefix, uri) in ET.iterparse(io.StringIO(xml_text), events=('start-ns',)):
            found.setdefault(prefix, uri)
    except ET.ParseError:
        pass
    return found


def with_nosharepages(xml_text, wanted):
    """The domain definition with <nosharepages/> in <memoryBacking> (wanted) or without it (an emptied
    <memoryBacking> is removed too). libvirt reformats the definition on define, so layout does not matter."""
    for prefix, uri in _namespaces(xml_text).items():
        if prefix:
            try:
                ET.register_namespace(prefix, uri)
            except ValueError:      # a prefix ElementTree reserves (ns0, ...): it writes its own
                pass
    root = _parse(xml_text, 'domain definition')
    backing = root.find('memoryBacking')
    if wanted:
        if backing is None:
            backing = ET.Element('memoryBacking')
            # where libvirt writes it: after the memory sizes
            sizes = [index for index, child in enumerate(root) if child.tag in ('maxMemory', 'memory', 'currentMemory')]
            root.insert(sizes[-1] + 1 if sizes else len(root), backing)
        if backing.find('nosharepages') is None:
            backing.append(ET.Element('nosharepages'))
    elif backing is not None:
        for element in backing.findall('nosharepages'):
            backing.remove(element)
        if not len(backing) and not backing.attrib:
            root.remove(backing)
    return ET.tostring(root, encoding='unicode')


def memory_backing_text(xml_text):
    """The <memoryBacking> element of a definition as indented text ('' when there is none): the diff."""
    backing = _parse(xml_text, 'domain definition').find('memoryBacking')
    if backing is None:
        return ''
    backing.tail = None
    _indent(backing)
    return ET.tostring(backing, encoding='unicode') + '\n'


def _indent(element, level=0):
    """Two blanks per level (ElementTree.indent is Python 3.9+)."""
    children = list(element)
    if children:
        element.text = '\n' + '  ' * (level + 1)
        for child in children:
            _indent(child, level + 1)
            child.tail = '\n' + '  ' * (level + 1)
        children[-1].tail = '\n' + '  ' * level
    else:
        element.text = None if not (element.text or '').strip() else element.text


# ---------------------------------------------------------------------------------------------------
# virsh

class Virsh:
    """virsh against one connection URI, each command one argument list with LC_ALL=C."""

    def __init__(self, run_command, binary, uri, clock=time.monotonic, sleep=time.sleep):
        self.run_command = run_command
        self.binary = binary
        self.uri = uri
        self.clock = clock
        self.sleep = sleep

    @classmethod
    def find(cls, get_bin_path, run_command, uri):
        """Virsh of this host, or LibvirtError naming the package that provides it."""
        binary = get_bin_path(VIRSH)
        if not binary:
            raise LibvirtError('virsh was not found: this module manages libvirt domains through virsh, which '
                               'libvirt installs (%s). Nothing was changed.' % PACKAGES, package='libvirt-clients')
        return cls(run_command, binary, uri)

    def run(self, *args, **kwargs):
        """stdout of `virsh -c URI args...`, or LibvirtError with virsh's own words (what=: the command in them)."""
        argv = [self.binary, '-c', self.uri] + list(args)
        rc, out, err = self.run_command(argv, environ_update=ENVIRONMENT)
        if rc != 0:
            words = ' '.join(line.strip() for line in (err or out or '').splitlines() if line.strip())
            if 'failed to connect to the hypervisor' in words:
                raise LibvirtError('Cannot connect to libvirt at %s (is libvirtd or virtqemud running?): %s. '
                                   'Nothing was changed.' % (self.uri, words))
            raise LibvirtError('%s failed (exit status %d): %s' % (
                kwargs.get('what') or 'virsh ' + ' '.join(args), rc, words or 'no message'))
        return out

    def names(self, *flags):
        return [line.strip() for line in self.run('list', '--name', *flags).splitlines() if line.strip()]

    def inventory(self):
        """Persistent and active domains: two `virsh list` calls."""
        return Inventory(self.names('--all', '--persistent'), self.names())

    def definition(self, name):
        """The persistent definition (what the next start uses)."""
        return self.run('dumpxml', '--inactive', name)

    def running_definition(self, name):
        """The definition the running QEMU was started with."""
        return self.run('dumpxml', name)

    def define(self, name, xml_text, directory=None):
        """virsh define of the new definition of a domain, from a private temporary file (removed afterwards)."""
        handle, path = tempfile.mkstemp(prefix='samepage-domain-', suffix='.xml', dir=directory)
        try:
            with os.fdopen(handle, 'w') as stream:
                stream.write(xml_text)
            return self.run('define', path, what='virsh define of the new definition of %s' % name)
        finally:
            os.unlink(path)

    def state(self, name):
        return self.run('domstate', name).strip()

    def restart(self, name, mode, timeout):
        """Stop a running domain (shutdown: ask the guest, wait at most timeout seconds; destroy: power off at
        once) and start it again, so that QEMU starts from its persistent definition."""
        if mode == 'destroy':
            self.run('destroy', name)
        else:
            self.run('shutdown', name)
            deadline = self.clock() + timeout
            while self.state(name) != 'shut off':
                if self.clock() >= deadline:
                    raise LibvirtError(
                        'Domain %r did not shut down within %d s of virsh shutdown (a guest without ACPI or a guest '
                        'agent, or a busy or hung guest, ignores the request); it still runs with its old setting. '
                        'Raise shutdown_timeout, shut it down yourself, or set restart_mode=destroy to power it off.'
                        % (name, timeout), option='shutdown_timeout')
                self.sleep(SHUTDOWN_POLL)
        self.run('start', name)
