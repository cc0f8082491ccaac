# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A fake virsh that answers like libvirt 9.0's virsh does, for the libvirt_nosharepages tests.

``FakeVirsh.run_command`` takes what AnsibleModule.run_command takes (monkeypatch a lambda calling it onto the
module class).
It keeps domains with a persistent definition (or none: transient), whether they run and the definition the
running QEMU was started with, and follows libvirt's rules; every output below was taken from the real
virsh (tests/system/test_libvirt_nosharepages.py compares this fake with a real libvirtd):

* ``list --name`` prints one name a line, then an empty line; without ``--all`` only active domains, with
  ``--all --persistent`` every domain with a definition; active ones first;
* ``dumpxml --inactive NAME`` prints the persistent definition (a transient domain's running one), ``dumpxml
  NAME`` the running one (the persistent one when it does not run); output ends with an empty line;
* ``define FILE`` replaces the persistent definition (a running domain keeps running as it was started) and
  normalises the XML as libvirt does (its own layout); ``start`` starts from the persistent definition;
* a ``shutdown`` is a request: the domain stops only if its guest reacts (ACPI), after some domstate polls;
  ``destroy`` stops it at once (a transient domain disappears);
* errors go to standard error as ``error: ...`` lines with exit status 1 and an empty line on standard
  output: ``failed to get domain 'x'``, ``Domain is already active``, ``Requested operation is not valid:
  domain is not running``, ``Failed to open file``; a daemon that is down fails every command with
  ``failed to connect to the hypervisor`` (and nothing on standard output).
"""

import os
import uuid
import xml.etree.ElementTree as ET

DOWN = ("error: failed to connect to the hypervisor\n"
        "error: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory\n")


class FakeDomain:

    def __init__(self, name, config, persistent=True, active=False, acpi=True):
        self.name = name
        self.config = config if persistent else None
        self.live = config if active else None
        self.active = active
        self.acpi = acpi
        self.shutdown_polls = None      # domstate calls left until a requested shutdown completes
        # libvirt gives a definition without a uuid one of its own
        self.uuid = ET.fromstring(config).findtext('uuid') or str(uuid.uuid4())


def definition(name, nosharepages=False, extra=''):
    """A definition as libvirt prints it (its layout, single quotes)."""
    backing = "  <memoryBacking>\n    <nosharepages/>\n  </memoryBacking>\n" if nosharepages else ''
    return ("<domain type='qemu'>\n  <name>%s</name>\n  <uuid>00000000-0000-4000-8000-%012d</uuid>\n"
            "  <memory unit='KiB'>32768</memory>\n  <currentMemory unit='KiB'>32768</currentMemory>\n%s"
            "  <vcpu placement='static'>1</vcpu>\n  <os>\n    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>\n"
            "  </os>\n%s  <devices>\n    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n  </devices>\n</domain>\n"
            % (name, sum(ord(char) for char in name), backing, extra))


def normalise(xml_text):
    """What libvirt makes of a definition it accepts: its own layout (here ElementTree's), a final newline."""
    return ET.tostring(ET.fromstring(xml_text), encoding='unicode') + '\n'


class FakeVirsh:
    """A libvirt connection as virsh sees it. domains: FakeDomain by name (active ones in start order)."""

    def __init__(self, uri='qemu:///system', up=True, shutdown_polls=2):
        self.uri = uri
        self.up = up
        self.shutdown_polls = shutdown_polls
        self.domains = {}
        self.calls = []          # argv after "virsh -c URI"
        self.environments = []
        self.refuse_define = {}  # name: libvirt's error for a definition it refuses

    def add(self, name, nosharepages=False, persistent=True, active=False, acpi=True, extra=''):
        self.domains[name] = FakeDomain(name, definition(name, nosharepages, extra), persistent, active, acpi)
        return self.domains[name]

    def mutations(self):
        return [call for call in self.calls if call[0] in ('define', 'start', 'destroy', 'shutdown', 'undefine')]

    # -- AnsibleModule.run_command ---------------------------------------------------------------------

    def run_command(self, args, check_rc=False, environ_update=None, **kwargs):
        assert os.path.basename(args[0]) == 'virsh' and args[1] == '-c', args
        self.environments.append(dict(environ_update or {}))
        if args[2] != self.uri or not self.up:
            self.calls.append(list(args[3:]))
            return 1, '', DOWN
        command, rest = args[3], list(args[4:])
        self.calls.append([command] + rest)
        handler = getattr(self, 'do_' + command, None)
        if handler is None:
            return self._error("unknown command: '%s'" % command)
        return handler(rest)

    # -- commands ---------------------------------------------------------------------------------------

    @staticmethod
    def _ok(text):
        return 0, text + '\n', ''

    @staticmethod
    def _error(*lines):
        return 1, '\n', ''.join('error: %s\n' % line for line in lines)

    def _get(self, name):
        return self.domains.get(name)

    def do_list(self, rest):
        flags = set(rest)
        assert '--name' in flags, rest
        active = [domain for domain in self.domains.values() if domain.active]
        inactive = sorted((domain for domain in self.domains.values() if not domain.active), key=lambda d: d.name)
        chosen = active + inactive if '--all' in flags else active
        if '--inactive' in flags:
            chosen = inactive
        if '--persistent' in flags:
            chosen = [domain for domain in chosen if domain.config is not None]
        if '--transient' in flags:
            chosen = [domain for domain in chosen if domain.config is None]
        return self._ok(''.join(domain.name + '\n' for domain in chosen))

    def do_dumpxml(self, rest):
        inactive = '--inactive' in rest
        names = [arg for arg in rest if not arg.startswith('--')]
        domain = self._get(names[0])
        if domain is None:
            return self._error("failed to get domain '%s'" % names[0])
        if inactive:
            return self._ok(domain.config if domain.config is not None else domain.live)
        return self._ok(domain.live if domain.active else domain.config)

    @staticmethod
    def _read(path):
        """(text of a definition file, None) or (None, virsh's answer when it cannot be opened)."""
        try:
            with open(path) as handle:
                return handle.read(), None
        except OSError:
            return None, FakeVirsh._error("Failed to open file '%s': No such file or directory" % path)

    def do_define(self, rest):
        path = rest[-1]
        text, refused = self._read(path)
        if refused:
            return refused
        try:
            root = ET.fromstring(text)
        except ET.ParseError as err:
            return self._error('Failed to define domain from %s' % path, '(domain_definition):%s' % err)
        name = root.findtext('name')
        if not name:
            return self._error('Failed to define domain from %s' % path, 'XML error: missing domain name information')
        if name in self.refuse_define:
            return self._error('Failed to define domain from %s' % path, self.refuse_define[name])
        domain = self._get(name)
        if domain is None:
            domain = self.domains[name] = FakeDomain(name, normalise(text))
        else:
            domain.config = normalise(text)
        return self._ok("Domain '%s' defined from %s\n" % (name, path))

    def do_create(self, rest):
        """A transient domain: started from a file, never defined."""
        path = rest[-1]
        text, refused = self._read(path)
        if refused:
            return refused
        name = ET.fromstring(text).findtext('name')
        if name in self.domains:
            return self._error('Failed to create domain from %s' % path, "operation failed: domain '%s' already "
                               "exists with uuid %s" % (name, self.domains[name].uuid))
        self.domains[name] = FakeDomain(name, normalise(text), persistent=False, active=True)
        return self._ok("Domain '%s' created from %s\n" % (name, path))

    def do_start(self, rest):
        domain = self._get(rest[0])
        if domain is None:
            return self._error("failed to get domain '%s'" % rest[0])
        if domain.active:
            return self._error('Domain is already active')
        domain.active = True
        domain.live = domain.config
        # a started domain moves behind the others that run (libvirt lists active domains by id)
        self.domains[domain.name] = self.domains.pop(domain.name)
        return self._ok("Domain '%s' started\n" % domain.name)

    def _stopped(self, domain):
        domain.active = False
        domain.live = None
        domain.shutdown_polls = None
        if domain.config is None:
            del self.domains[domain.name]

    def do_destroy(self, rest):
        domain = self._get(rest[0])
        if domain is None:
            return self._error("failed to get domain '%s'" % rest[0])
        if not domain.active:
            return self._error("Failed to destroy domain '%s'" % domain.name,
                               'Requested operation is not valid: domain is not running')
        self._stopped(domain)
        return self._ok("Domain '%s' destroyed\n" % domain.name)

    def do_shutdown(self, rest):
        domain = self._get(rest[0])
        if domain is None:
            return self._error("failed to get domain '%s'" % rest[0])
        if not domain.active:
            return self._error("Failed to shutdown domain '%s'" % domain.name,
                               'Requested operation is not valid: domain is not running')
        if domain.acpi:
            domain.shutdown_polls = self.shutdown_polls
        return self._ok("Domain '%s' is being shutdown\n" % domain.name)

    def do_domstate(self, rest):
        domain = self._get(rest[0])
        if domain is None:
            return self._error("failed to get domain '%s'" % rest[0])
        if domain.active and domain.shutdown_polls is not None:
            if domain.shutdown_polls <= 0:
                self._stopped(domain)
                if domain.name not in self.domains:
                    return self._error("failed to get domain '%s'" % rest[0])
            else:
                domain.shutdown_polls -= 1
        return self._ok('running\n' if domain.active else 'shut off\n')
