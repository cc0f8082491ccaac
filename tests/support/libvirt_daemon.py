# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A real libvirtd of our own, for system tests: private configuration and state, stopped by its pid.

    with PrivateLibvirtd() as daemon:             # Debian's libvirtd, installed if missing
        daemon.virsh('define', path)              # virsh against daemon.uri
        ...
    # here: every domain destroyed and undefined, the daemon and every QEMU it started ended by pid

The machine's libvirt is left alone. libvirtd runs as root (the qemu:///system driver) in a mount namespace
of its own (unshare -m) in which a temporary directory is bound over /etc/libvirt, /run, /var/lib/libvirt,
/var/log/libvirt and /var/cache/libvirt: its configuration, sockets, domain definitions, QEMU pid files and
logs all live in that directory, and disappear with it. Clients reach it through its socket in that
directory (``qemu+unix:///system?socket=...``). Its qemu.conf runs guests as root without cgroups, security
driver or virtlogd (none of them exists without systemd); that changes how libvirt confines QEMU, not the
QEMU command line libvirt builds from a domain definition, which is what the tests look at.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

from ansible_collections.samepage.ksm.tests.support.host_packages import end_process, require, which

PACKAGES = {'libvirtd': 'libvirt-daemon-system', 'virsh': 'libvirt-clients', 'qemu-system-x86_64': 'qemu-system-x86',
            'unshare': 'util-linux'}
# Bound over by the private directory (each must exist: the packages create them).
BOUND = (('etc', '/etc/libvirt'), ('run', '/run'), ('lib', '/var/lib/libvirt'), ('log', '/var/log/libvirt'),
         ('cache', '/var/cache/libvirt'))
LIBVIRTD_CONF = '''\
# samepage.ksm system tests: a private libvirtd (tests/support/libvirt_daemon.py)
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_rw_perms = "0700"
log_outputs = "2:file:/var/log/libvirt/libvirtd.log"
'''
QEMU_CONF = '''\
# No cgroups, security driver, namespaces or virtlogd: none of them is there without systemd.
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
'''
# How long libvirtd lives without a client before it ends by itself: the safety net should a test run be killed.
IDLE_TIMEOUT = 900


def skip_reason():
    """Why a private libvirtd cannot run here (after installing what is missing), or None."""
    if os.geteuid() != 0:
        return 'a libvirtd of the qemu:///system driver needs root (running as uid %d)' % os.geteuid()
    reason = require(PACKAGES)
    if reason:
        return reason
    for dummy, path in BOUND:
        if not os.path.isdir(path):
            return '%s does not exist (libvirt-daemon-system makes it)' % path
    probe = subprocess.run([which('unshare'), '-m', '--propagation', 'private', 'true'], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, check=False)
    if probe.returncode != 0:
        return 'cannot make a mount namespace (unshare -m): %s' % probe.stdout.decode('utf-8', 'replace').strip()
    return None


class LibvirtdError(RuntimeError):
    pass


class PrivateLibvirtd:
    """A libvirtd with a private configuration and state (see the module's docstring)."""

    def __init__(self):
        self.root = None
        self.process = None
        self.pid = None
        self.uri = None
        self.socket = None

    # -- life cycle ------------------------------------------------------------------------------

    def start(self):
        self.root = tempfile.mkdtemp(prefix='samepage-libvirtd-')
        for name, dummy in BOUND:
            os.makedirs(os.path.join(self.root, name))
        os.makedirs(os.path.join(self.root, 'run', 'libvirt'))
        os.makedirs(os.path.join(self.root, 'etc', 'qemu'))
        with open(os.path.join(self.root, 'etc', 'libvirtd.conf'), 'w') as handle:
            handle.write(LIBVIRTD_CONF)
        with open(os.path.join(self.root, 'etc', 'qemu.conf'), 'w') as handle:
            handle.write(QEMU_CONF)
        binds = '; '.join('mount --bind %s %s' % (os.path.join(self.root, name), path) for name, path in BOUND)
        # exec: the pid of unshare is the pid of sh is the pid of libvirtd.
        script = 'set -e; %s; exec %s --timeout %d' % (binds, which('libvirtd'), IDLE_TIMEOUT)
        self.socket = os.path.join(self.root, 'run', 'libvirt', 'libvirt-sock')
        self.uri = 'qemu+unix:///system?socket=%s' % self.socket
        output_path = os.path.join(self.root, 'libvirtd.out')
        with open(output_path, 'wb') as output:
            self.process = subprocess.Popen([which('unshare'), '-m', '--propagation', 'private', 'sh', '-c', script],
                                            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.pid = self.process.pid
        deadline = time.time() + 60
        while True:
            if self.process.poll() is not None:
                with open(output_path, 'rb') as handle:
                    output = handle.read().decode('utf-8', 'replace')
                self.stop()
                raise LibvirtdError('libvirtd ended at once (exit status %s):\n%s' % (self.process.returncode, output))
            if os.path.exists(self.socket) and self.virsh('version', check=False).returncode == 0:
                return self
            if time.time() > deadline:
                self.stop()
                raise LibvirtdError('libvirtd did not answer on %s within 60 s' % self.socket)
            time.sleep(0.2)

    def qemu_pids(self):
        """{domain: pid} of the QEMU processes this daemon started and that still run (its pid files)."""
        pids = {}
        directory = os.path.join(self.root, 'run', 'libvirt', 'qemu')
        if not os.path.isdir(directory):
            return pids
        for entry in os.listdir(directory):
            if entry.endswith('.pid'):
                try:
                    with open(os.path.join(directory, entry)) as handle:
                        pid = int(handle.read().strip())
                except (OSError, ValueError):
                    continue
                if _alive(pid) and _is_qemu(pid):     # driver.pid is libvirtd's own
                    pids[entry[:-len('.pid')]] = pid
        return pids

    def stop(self):
        """Destroy and undefine every domain, end the daemon and any QEMU left, by pid; remove the directory."""
        if self.root is None:
            return
        problems = []
        try:
            if self.process is not None and self.process.poll() is None:
                problems += self._remove_domains()
            leftover = self.qemu_pids()
            if self.process is not None:
                end_process(self.process)
            for name, pid in sorted(leftover.items()):   # QEMU outlives libvirtd: end what is left by pid
                if _alive(pid):
                    problems.append('QEMU of %s (pid %d) was still running after virsh destroy' % (name, pid))
                    os.kill(pid, signal.SIGKILL)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            self.process = None
        if problems:
            raise LibvirtdError('; '.join(problems))

    def _remove_domains(self):
        problems = []
        active = self.names('--name')
        for name in active:
            done = self.virsh('destroy', name, check=False)
            if done.returncode != 0 and name in self.names('--name'):
                problems.append('virsh destroy %s: %s' % (name, done.stderr.strip()))
        for name in self.names('--all', '--name'):
            done = self.virsh('undefine', name, check=False)
            if done.returncode != 0:
                problems.append('virsh undefine %s: %s' % (name, done.stderr.strip()))
        left = self.names('--all', '--name')
        if left:
            problems.append('domains still defined: %s' % ', '.join(left))
        return problems

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
        return False

    # -- clients -----------------------------------------------------------------------------------

    def virsh(self, *args, **kwargs):
        """Run virsh against this daemon (LC_ALL=C); a CompletedProcess with text stdout/stderr."""
        check = kwargs.pop('check', True)
        done = subprocess.run([which('virsh'), '-c', self.uri] + list(args), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, LC_ALL='C'),
                              universal_newlines=True, check=False, **kwargs)
        if check and done.returncode != 0:
            raise LibvirtdError('virsh %s failed (%d): %s' % (' '.join(args), done.returncode, done.stderr.strip()))
        return done

    def names(self, *flags):
        return [line.strip() for line in self.virsh('list', *flags).stdout.splitlines() if line.strip()]

    def define(self, xml_text):
        path = os.path.join(self.root, 'definition.xml')
        with open(path, 'w') as handle:
            handle.write(xml_text)
        return self.virsh('define', path)

    def qemu_argv(self, name):
        """The command line of a running domain's QEMU process."""
        pid = self.qemu_pids()[name]
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return [part.decode('utf-8', 'replace') for part in handle.read().split(b'\0')[:-1]]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def _is_qemu(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            program = handle.read().split(b'\0')[0]
    except OSError:
        return False
    return os.path.basename(program).startswith(b'qemu')


def tiny_domain(name, nosharepages=False, memory_mib=32):
    """A domain definition that starts without a disk image: TCG, no devices beyond libvirt's defaults."""
    backing = '  <memoryBacking>\n    <nosharepages/>\n  </memoryBacking>\n' if nosharepages else ''
    return ('<domain type="qemu">\n'
            '  <name>%s</name>\n'
            '  <memory unit="MiB">%d</memory>\n'
            '%s'
            '  <vcpu>1</vcpu>\n'
            '  <os><type arch="x86_64" machine="pc">hvm</type></os>\n'
            '  <devices><emulator>%s</emulator></devices>\n'
            '</domain>\n' % (name, memory_mib, backing, which('qemu-system-x86_64')))
