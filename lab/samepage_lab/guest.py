# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One guest: what it is (GuestSpec), its QEMU process, and SSH to it (one shared connection)."""

import os
import re
import shlex
import signal
import subprocess
import time

from .common import LabError, fmt_seconds, indent, pid_alive, port_in_use, proc_cmdline, say, tail
from .images import SUITES


SSH_OPTIONS = ('-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
               '-o', 'LogLevel=ERROR', '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes')

# Emulated CPUs: no speculative-execution mitigations, no crypto self-tests, no soft-lockup watchdog.
KERNEL_ARGS = 'mitigations=off cryptomgr.notests nowatchdog'

BOOT_TIMEOUT = int(os.environ.get('SAMEPAGE_LAB_BOOT_TIMEOUT', '420'))
KVM_PROBE_SECONDS = 20

# Milestones read from a guest's serial console while it boots (last match wins).
BOOT_STAGES = (
    ('Linux version', 'kernel starting'),
    ('Run /init', 'initramfs'),
    ('systemd[1]', 'systemd starting'),
    ('systemd ', 'systemd starting'),
    ('Reached target', 'starting services'),
    ('Started ssh', 'sshd started'),
    ('OpenBSD Secure Shell server', 'sshd started'),
    ('login:', 'login prompt'),
)


class GuestSpec:
    """What one guest is: name, Debian suite, inventory group, memory, CPUs and NUMA nodes."""

    def __init__(self, name, suite, group, memory_mib=1024, cpus=1, numa_nodes=1):
        if suite not in SUITES:
            raise LabError('unknown suite %r for guest %s (known: %s)' % (suite, name, ', '.join(SUITES)))
        if numa_nodes > 1 and cpus < numa_nodes:
            cpus = numa_nodes
        self.name = name
        self.suite = suite
        self.group = group
        self.memory_mib = memory_mib
        self.cpus = cpus
        self.numa_nodes = numa_nodes

    def to_dict(self):
        return {'name': self.name, 'suite': self.suite, 'group': self.group,
                'memory_mib': self.memory_mib, 'cpus': self.cpus, 'numa_nodes': self.numa_nodes}

    @classmethod
    def from_dict(cls, data):
        return cls(data['name'], data['suite'], data['group'], data.get('memory_mib', 1024),
                   data.get('cpus', 1), data.get('numa_nodes', 1))


class Guest:
    """A running (or starting) guest of a lab."""

    def __init__(self, lab, spec, port=None, pid=None, accel=None, kernel_release=None, image_dir=None):
        self.lab = lab
        self.spec = spec
        self.name = spec.name
        self.suite = spec.suite
        self.group = spec.group
        self.numa_nodes = spec.numa_nodes
        self.port = port
        self.pid = pid
        self.accel = accel
        self.kernel_release = kernel_release
        self.image_dir = image_dir
        self.dir = os.path.join(lab.state_dir, 'guests', spec.name)
        self.pidfile = os.path.join(self.dir, 'qemu.pid')
        self.console = os.path.join(self.dir, 'console.log')
        self.qemu_log = os.path.join(self.dir, 'qemu.log')

    @property
    def debian(self):
        return SUITES[self.suite]['debian']

    def to_dict(self):
        return dict(self.spec.to_dict(), port=self.port, pid=self.pid, accel=self.accel,
                    kernel_release=self.kernel_release, image_dir=self.image_dir)

    def __repr__(self):
        return '<Guest %s debian%d port %s>' % (self.name, self.debian, self.port)

    # ---- QEMU

    def qemu_command(self, image, accel):
        spec = self.spec
        cmd = ['qemu-system-x86_64', '-name', 'samepage-lab-%s' % spec.name,
               '-nodefaults', '-no-user-config', '-display', 'none',
               '-accel', accel, '-cpu', 'host' if accel == 'kvm' else 'max',
               '-m', str(spec.memory_mib), '-smp', str(spec.cpus),
               '-kernel', image.kernel, '-initrd', image.initrd,
               '-append', 'root=/dev/vda rw console=ttyS0 systemd.hostname=%s %s' % (spec.name, KERNEL_ARGS),
               '-drive', 'file=%s,format=raw,if=virtio,snapshot=on' % image.disk,
               '-netdev', 'user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22' % self.port,
               '-device', 'virtio-net-pci,netdev=n0',
               '-device', 'virtio-rng-pci',
               '-serial', 'file:' + self.console,
               '-monitor', 'none',
               '-pidfile', self.pidfile]
        merge = 'on' if self.lab.host_merge else 'off'
        if not self.lab.host_merge:
            cmd += ['-machine', 'mem-merge=off']
        if spec.numa_nodes > 1:
            per_node = spec.memory_mib // spec.numa_nodes
            cpus_per_node = spec.cpus // spec.numa_nodes
            for node in range(spec.numa_nodes):
                first = node * cpus_per_node
                last = first + cpus_per_node - 1
                cpus = str(first) if first == last else '%d-%d' % (first, last)
                cmd += ['-object', 'memory-backend-ram,id=m%d,size=%dM,merge=%s' % (node, per_node, merge),
                        '-numa', 'node,nodeid=%d,cpus=%s,memdev=m%d' % (node, cpus, node)]
        return cmd

    def start(self, image, accel, tie_to_parent=False):
        os.makedirs(self.dir, exist_ok=True)
        for path in (self.console, self.pidfile):
            if os.path.exists(path):
                os.unlink(path)
        self.accel = accel
        self.image_dir = image.dir
        self.kernel_release = image.info().get('kernel_release')
        cmd = self.qemu_command(image, accel)
        with open(os.path.join(self.dir, 'qemu.cmd'), 'w') as handle:
            handle.write(' '.join(shlex.quote(c) for c in cmd) + '\n')
        # QEMU puts the snapshot=on overlay in TMPDIR: keep it in the lab's state directory.
        env = dict(os.environ, TMPDIR=self.dir)
        preexec = _die_with_parent if tie_to_parent else None
        with open(self.qemu_log, 'w') as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                    start_new_session=True, preexec_fn=preexec, close_fds=True)
        self.pid = proc.pid
        self._proc = proc
        with open(self.pidfile + '.lab', 'w') as handle:
            handle.write('%d\n' % proc.pid)
        # Popen returns once the exec has begun, but /proc/<pid>/cmdline stays empty until the kernel has
        # finished it (long enough on a loaded machine): until then running() and stop(), which know
        # QEMU by its command line, would take this guest for stopped and leave its QEMU running.
        deadline = time.time() + 30
        while proc.poll() is None and not self.ours(proc.pid) and time.time() < deadline:
            time.sleep(0.05)

    def ours(self, pid):
        """Is pid a QEMU this lab started for this guest? (pid files can outlive their process)"""
        args = proc_cmdline(pid)
        return bool(args) and 'qemu-system' in os.path.basename(args[0]) and self.pidfile in args

    def recorded_pids(self):
        pids = set()
        for path in (self.pidfile, self.pidfile + '.lab'):
            try:
                with open(path) as handle:
                    pids.add(int(handle.read().strip()))
            except (OSError, ValueError):
                pass
        if self.pid:
            pids.add(int(self.pid))
        return sorted(p for p in pids if self.ours(p))

    def running(self):
        return bool(self.recorded_pids())

    def stop(self, timeout=10):
        """Stop this guest's QEMU (only a process whose command line is ours) and wait for its port."""
        pids = self.recorded_pids()
        if pids:
            self.close_shared_connection()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + timeout
        for pid in pids:
            while pid_alive(pid) and time.time() < deadline:
                self._reap()
                time.sleep(0.1)
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                while pid_alive(pid) and time.time() < deadline + 5:
                    self._reap()
                    time.sleep(0.1)
        self._reap()
        for path in (self.pidfile, self.pidfile + '.lab'):
            if os.path.exists(path):
                os.unlink(path)
        if self.port:
            deadline = time.time() + 5
            while port_in_use(self.port) and time.time() < deadline:
                time.sleep(0.1)
        return pids

    def _reap(self):
        proc = getattr(self, '_proc', None)
        if proc is not None:
            proc.poll()

    # ---- SSH

    # One SSH connection per guest, shared by every command (a new connection costs a key exchange on an
    # emulated CPU: seconds; a command over the shared one: a tenth of a second).
    @property
    def control_path(self):
        path = os.path.join(self.dir, 'ssh.sock')
        return path if len(path.encode()) <= 100 else None    # Unix socket paths are short

    def _shared_connection_options(self):
        path = self.control_path
        if not path:
            return []
        return ['-o', 'ControlMaster=auto', '-o', 'ControlPath=%s' % path, '-o', 'ControlPersist=120',
                '-o', 'ServerAliveInterval=10', '-o', 'ServerAliveCountMax=6']

    def close_shared_connection(self):
        """End the shared SSH connection (before a reboot, or when the guest stops)."""
        path = self.control_path
        if path and os.path.exists(path):
            try:
                subprocess.run(['ssh', '-o', 'ControlPath=%s' % path, '-O', 'exit', 'root@127.0.0.1'],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=15, check=False)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.unlink(path)
            except OSError:
                pass

    def ssh_command(self, command=None, tty=False):
        args = (['ssh'] + list(SSH_OPTIONS) + self._shared_connection_options()
                + ['-i', self.lab.key, '-p', str(self.port)])
        if tty:
            args.append('-t')
        args.append('root@127.0.0.1')
        if command is not None:
            args.append(command if isinstance(command, str) else ' '.join(shlex.quote(c) for c in command))
        return args

    def ssh(self, command, check=True, timeout=120, input=None):
        """Run a shell command in the guest; returns the CompletedProcess (text stdout/stderr)."""
        args = self.ssh_command(command)
        args[1:1] = ['-o', 'ConnectTimeout=10']
        result = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True, timeout=timeout, input=input, check=False,
                                stdin=None if input is not None else subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise LabError('%s: `%s` failed (exit %d):\n%s%s' % (
                self.name, command, result.returncode, result.stdout, result.stderr))
        return result

    def answers(self, timeout=10):
        try:
            result = self.ssh('true', check=False, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    def boot_id(self):
        try:
            result = self.ssh('cat /proc/sys/kernel/random/boot_id', check=False, timeout=20)
        except subprocess.TimeoutExpired:
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    def boot_stage(self):
        try:
            with open(self.console, 'rb') as handle:
                text = handle.read().decode('utf-8', 'replace')
        except OSError:
            return 'QEMU starting'
        best, where = 'firmware', -1
        for needle, label in BOOT_STAGES:
            pos = text.rfind(needle)
            if pos > where:
                best, where = label, pos
        return best

    def wait_ssh(self, timeout=BOOT_TIMEOUT, old_boot_id=None, progress=True):
        """Wait until SSH answers (and, after a reboot, with a new boot id). LabError past the bound."""
        started = time.time()
        deadline = started + timeout
        last_stage, last_said = None, 0
        while True:
            if not self.running():
                raise LabError('%s: QEMU exited while the guest was booting.\nQEMU said:\n%s\n'
                               'Serial console (last lines):\n%s'
                               % (self.name, indent(tail(self.qemu_log, 10)), indent(tail(self.console))))
            boot_id = self.boot_id()
            if boot_id and boot_id != old_boot_id:
                if progress:
                    say('%s: SSH answers on 127.0.0.1:%d after %s' % (self.name, self.port,
                                                                      fmt_seconds(time.time() - started)))
                return boot_id
            now = time.time()
            if now > deadline:
                raise LabError('%s: no SSH answer on 127.0.0.1:%d within %d s (accelerator %s); boot stage '
                               'reached: %s.\nKernel and systemd warnings on the serial console:\n%s\n'
                               'Serial console (last lines of %s):\n%s'
                               % (self.name, self.port, timeout, self.accel, self.boot_stage(),
                                  indent(console_warnings(self.console)), self.console,
                                  indent(tail(self.console, 60))))
            stage = self.boot_stage()
            if progress and (stage != last_stage or now - last_said > 30):
                say('%s: %s (%s)' % (self.name, stage, fmt_seconds(now - started)))
                last_stage, last_said = stage, now
            time.sleep(2)

    def reboot(self, timeout=BOOT_TIMEOUT, progress=True):
        """`systemctl reboot` in the guest, then wait until SSH answers from the new boot."""
        old = self.boot_id()
        if not old:
            raise LabError('%s: not answering before the reboot' % self.name)
        try:
            self.ssh('systemctl reboot', check=False, timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self.close_shared_connection()   # its TCP connection dies with this boot
        if progress:
            say('%s: rebooting' % self.name)
        return self.wait_ssh(timeout=timeout, old_boot_id=old, progress=progress)


# Lines of a serial console that say why a boot stalls (the stack traces after them are left out).
CONSOLE_WARNINGS = re.compile(r'blocked for more than|soft lockup|hard LOCKUP|rcu.*stall|BUG:|Oops|'
                              r'Kernel panic|Failed to start|Timed out|A start job is running|Dependency failed')


def console_warnings(path, limit=15):
    """The last `limit` warning lines of a guest's serial console (CONSOLE_WARNINGS), or a note that
    there are none."""
    lines = [line for line in tail(path, 5000).splitlines() if CONSOLE_WARNINGS.search(line)]
    return '\n'.join(lines[-limit:]) or '(none)'


def _die_with_parent():
    """preexec_fn: have the kernel SIGTERM the child when the process that started it dies."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except Exception:  # best effort: the pid files and stop() are the real clean-up
        pass
