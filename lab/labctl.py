# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""labctl: a lab of real Debian guests under QEMU to try and test samepage.ksm.

Subcommands:
  build      build (or reuse from the cache) the guest images: Debian 12 and Debian 13
  up         boot the lab's guests and write an Ansible inventory for them
  down       stop every guest of the lab and free its ports
  status     show the guests, their ports and whether SSH answers
  ssh NAME   open an SSH session (or run a command) on a guest
  inventory  print the path of the lab's inventory (and its content with --show)
  run -- CMD boot the guests, run CMD with SAMEPAGE_LAB_REUSE naming the lab, then stop every guest,
             whatever CMD does (the guests are also tied to labctl: they end if it is killed)
  demo       everything: tools, images, guests, `ansible-playbook site.yml`, a workload, a report

Standard library only; run it with the system python3 (root: it installs QEMU and debootstrap with
apt-get when they are missing, and debootstrap needs root). Images are cached outside the clone
(SAMEPAGE_LAB_CACHE, default /var/cache/samepage-ksm/lab) under a key that hashes the recipe, and guests
boot them with snapshot=on, so images are never modified and a second run reuses them. The lab's state
(pid files, console logs, inventory) lives in SAMEPAGE_LAB_STATE (default /tmp/samepage-ksm-lab-<uid>);
tests use a state directory of their own, so they never touch a demo lab that is running.

Guests reach nothing outside: user-mode networking with restrict=on and one forwarded port, SSH on
127.0.0.1, with a key the lab generates. KVM is used only where it really boots a guest (detected);
otherwise QEMU's TCG emulates the CPU.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# Bump to rebuild every image even if nothing else in the recipe changed.
RECIPE_VERSION = 1

SUITES = {
    'bookworm': {'debian': 12, 'kernel': '6.1'},
    'trixie': {'debian': 13, 'kernel': '6.12'},
}

PACKAGES = (
    'systemd-sysv', 'udev', 'dbus', 'openssh-server', 'python3', 'linux-image-amd64',
    'initramfs-tools', 'iproute2', 'ksmtuned', 'procps', 'kmod',
)

DISK_SIZE = '3G'

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


class LabError(Exception):
    """A failure with a message meant for the person running the lab."""


class GuestSpec(object):
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


# The default lab: both kernel generations, one guest with two NUMA nodes, one guest per example group.
DEFAULT_GUESTS = (
    GuestSpec('lab-dense', 'bookworm', 'dense', memory_mib=1024, cpus=1, numa_nodes=1),
    GuestSpec('lab-balanced', 'trixie', 'balanced', memory_mib=1024, cpus=2, numa_nodes=2),
    GuestSpec('lab-secure', 'trixie', 'secure', memory_mib=1024, cpus=1, numa_nodes=1),
)
GROUPS = ('dense', 'balanced', 'secure')
PARENT_GROUP = 'kvm_hosts'


# --------------------------------------------------------------------------------------------------
# Small helpers

_print_lock = threading.Lock()


def say(msg, stream=None):
    """Progress output: one line, flushed at once, safe from several threads."""
    with _print_lock:
        stream = stream or sys.stdout
        stream.write('lab: %s\n' % msg)
        stream.flush()


def default_cache_dir():
    if os.environ.get('SAMEPAGE_LAB_CACHE'):
        return os.path.abspath(os.environ['SAMEPAGE_LAB_CACHE'])
    if os.geteuid() == 0:
        return '/var/cache/samepage-ksm/lab'
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'samepage-ksm', 'lab')


def default_state_dir():
    if os.environ.get('SAMEPAGE_LAB_STATE'):
        return os.path.abspath(os.environ['SAMEPAGE_LAB_STATE'])
    return os.path.join(tempfile.gettempdir(), 'samepage-ksm-lab-%d' % os.geteuid())


def tail(path, lines=25):
    try:
        with open(path, 'rb') as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode('utf-8', 'replace')
    except (IOError, OSError):
        return '(no %s)' % path
    text = re.sub(r'\x1b\[[0-9;?]*[A-Za-z]', '', text).replace('\r', '')
    return '\n'.join(text.splitlines()[-lines:])


def indent(text, prefix='    '):
    return '\n'.join(prefix + line for line in text.splitlines())


def fmt_seconds(seconds):
    if seconds < 90:
        return '%.0f s' % seconds
    return '%d min %02d s' % (seconds // 60, seconds % 60)


@contextlib.contextmanager
def flocked(path, what, shared=False):
    """Hold an flock on path; say so if somebody else holds it first."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle = open(path, 'a+')
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except (IOError, OSError):
            say('waiting for %s (another process holds %s)' % (what, path))
            fcntl.flock(handle, mode)
        yield handle
    finally:
        handle.close()


def run(cmd, **kwargs):
    kwargs.setdefault('stdout', subprocess.PIPE)
    kwargs.setdefault('stderr', subprocess.STDOUT)
    kwargs.setdefault('universal_newlines', True)
    kwargs.setdefault('check', False)
    return subprocess.run(cmd, **kwargs)  # pylint: disable=subprocess-run-check


def free_port():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


def port_in_use(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(('127.0.0.1', port))
    except OSError:
        return True
    finally:
        sock.close()
    return False


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(') ', maxsplit=1)[-1].split()[0] != 'Z'
    except (IOError, OSError):
        return False


def proc_cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return handle.read().decode('utf-8', 'replace').split('\0')
    except (IOError, OSError):
        return []


# --------------------------------------------------------------------------------------------------
# Host tools

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


def debian_mirror():
    """The Debian mirror apt uses on this machine (SAMEPAGE_LAB_MIRROR overrides it)."""
    if os.environ.get('SAMEPAGE_LAB_MIRROR'):
        return os.environ['SAMEPAGE_LAB_MIRROR']
    files = ['/etc/apt/sources.list']
    listing = '/etc/apt/sources.list.d'
    if os.path.isdir(listing):
        files += [os.path.join(listing, name) for name in sorted(os.listdir(listing))]
    for path in files:
        try:
            with open(path) as handle:
                text = handle.read()
        except (IOError, OSError):
            continue
        if path.endswith('.sources'):
            for stanza in re.split(r'\n\s*\n', text):
                uris = re.search(r'^URIs:\s*(.+)$', stanza, re.M)
                suites = re.search(r'^Suites:\s*(.+)$', stanza, re.M)
                if uris and suites and _plain_debian(uris.group(1).split()[0], suites.group(1).split()):
                    return uris.group(1).split()[0]
        else:
            for line in text.splitlines():
                words = re.sub(r'\[[^]]*\]', '', line.split('#', maxsplit=1)[0]).split()
                if len(words) >= 3 and words[0] == 'deb' and _plain_debian(words[1], [words[2]]):
                    return words[1]
    return 'http://deb.debian.org/debian'


def _plain_debian(uri, suites):
    debian_suites = ('bookworm', 'trixie', 'forky', 'sid', 'stable', 'testing', 'unstable', 'bullseye')
    return uri.rstrip('/').endswith('/debian') and any(s in debian_suites for s in suites)


# --------------------------------------------------------------------------------------------------
# Images

def configure_rootfs(root, pubkey):
    """Turn a debootstrapped tree into a guest that boots under QEMU and takes the lab's SSH key.

    Part of the image key (its source is hashed): changing it rebuilds the images.
    """
    def write(rel, text, mode=0o644):
        path = os.path.join(root, rel.lstrip('/'))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as handle:
            handle.write(text)
        os.chmod(path, mode)

    write('/etc/hostname', 'samepage-lab\n')
    write('/etc/hosts', '127.0.0.1\tlocalhost\n127.0.1.1\tsamepage-lab\n'
                        '::1\tlocalhost ip6-localhost ip6-loopback\n')
    write('/etc/fstab', '/dev/vda\t/\text4\trw,errors=remount-ro\t0\t1\n')
    os.makedirs(os.path.join(root, 'root/.ssh'), mode=0o700, exist_ok=True)
    write('/root/.ssh/authorized_keys', pubkey.strip() + '\n', 0o600)
    write('/etc/systemd/network/20-lab.network', '[Match]\nName=en*\n\n[Network]\nDHCP=yes\n')
    write('/etc/ssh/sshd_config.d/samepage-lab.conf',
          'PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n')
    # Boot time under emulation goes mostly into loading kernel modules. A small initramfs with only
    # what mounts the root disk, and no autoloading of modules a lab guest does not use (kvm because
    # `-cpu max` offers SVM, CPU-accelerated crypto with its self-tests, wireless, speaker, SMBus).
    write('/etc/initramfs-tools/conf.d/samepage-lab.conf', 'MODULES=list\n')
    with open(os.path.join(root, 'etc/initramfs-tools/modules'), 'a') as handle:
        handle.write('virtio_pci\nvirtio_blk\next4\n')
    write('/etc/modprobe.d/samepage-lab.conf', ''.join('blacklist %s\n' % name for name in (
        'kvm', 'kvm_amd', 'kvm_intel', 'cfg80211', 'pcspkr', 'i2c_piix4', 'floppy', 'aesni_intel',
        'ghash_clmulni_intel', 'sha256_ssse3', 'sha512_ssse3', 'polyval_clmulni', 'crct10dif_pclmul',
        'crc32_pclmul', 'drm', 'bochs', 'serio_raw', 'joydev', 'evdev', 'sg')))
    # Nothing outside is reachable: timers that fetch or scrub only cost CPU under emulation.
    chroot = ['chroot', root]
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive', LC_ALL='C')
    steps = (
        ['systemctl', 'enable', 'systemd-networkd.service', 'ssh.service'],
        ['systemctl', 'mask', 'apt-daily.timer', 'apt-daily-upgrade.timer', 'e2scrub_all.timer',
         'e2scrub_reap.service', 'fstrim.timer', 'systemd-networkd-wait-online.service'],
        ['update-initramfs', '-u', '-k', 'all'],
        ['apt-get', 'clean'],
    )
    for step in steps:
        result = run(chroot + step, env=env)
        if result.returncode != 0:
            raise LabError('configuring the image failed at `%s`:\n%s' % (' '.join(step), indent(result.stdout)))
    shutil.rmtree(os.path.join(root, 'var/lib/apt/lists'), ignore_errors=True)
    os.makedirs(os.path.join(root, 'var/lib/apt/lists/partial'), exist_ok=True)
    # An empty machine-id: every guest makes its own at first boot.
    write('/etc/machine-id', '', 0o444)
    dbus_id = os.path.join(root, 'var/lib/dbus/machine-id')
    if os.path.lexists(dbus_id):
        os.unlink(dbus_id)


class Image(object):
    """A cached guest image: raw ext4 disk, kernel and initrd, under CACHE/images/<suite>-<key>."""

    def __init__(self, cache_dir, suite, pubkey):
        self.cache_dir = cache_dir
        self.suite = suite
        self.pubkey = pubkey
        self.key = image_key(suite, pubkey)
        self.dir = os.path.join(cache_dir, 'images', '%s-%s' % (suite, self.key))
        self.disk = os.path.join(self.dir, 'disk.img')
        self.kernel = os.path.join(self.dir, 'vmlinuz')
        self.initrd = os.path.join(self.dir, 'initrd.img')
        self.info_path = os.path.join(self.dir, 'image.json')

    def ready(self):
        return all(os.path.exists(p) for p in (self.disk, self.kernel, self.initrd, self.info_path))

    def info(self):
        with open(self.info_path) as handle:
            return json.load(handle)


def recipe(suite, pubkey):
    return {
        'recipe_version': RECIPE_VERSION,
        'suite': suite,
        'variant': 'minbase',
        'packages': sorted(PACKAGES),
        'disk_size': DISK_SIZE,
        'configure': inspect.getsource(configure_rootfs),
        'ssh_key': pubkey.strip(),
    }


def image_key(suite, pubkey):
    blob = json.dumps(recipe(suite, pubkey), sort_keys=True).encode('utf-8')
    return hashlib.sha256(blob).hexdigest()[:16]


def ssh_keypair(cache_dir):
    """The lab's SSH key (made once per cache; images carry its public half)."""
    key = os.path.join(cache_dir, 'ssh', 'lab_ed25519')
    if not (os.path.exists(key) and os.path.exists(key + '.pub')):
        with flocked(os.path.join(cache_dir, 'locks', 'ssh-key.lock'), 'the lab SSH key'):
            if not (os.path.exists(key) and os.path.exists(key + '.pub')):
                ensure_tools(['ssh-keygen'])
                os.makedirs(os.path.dirname(key), mode=0o700, exist_ok=True)
                for path in (key, key + '.pub'):
                    if os.path.exists(path):
                        os.unlink(path)
                result = run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'samepage-ksm-lab', '-f', key])
                if result.returncode != 0:
                    raise LabError('ssh-keygen failed:\n%s' % indent(result.stdout))
                say('generated the lab SSH key %s' % key)
    with open(key + '.pub') as handle:
        return key, handle.read().strip()


class Builder(object):
    """Builds one image with debootstrap and mke2fs -d, showing progress; cleans up on failure."""

    # debootstrap's "I: <Verb> ..." lines, grouped into the phases shown as progress.
    PHASES = {'Retrieving': 'downloading', 'Validating': 'downloading', 'Checking': 'downloading',
              'Resolving': 'downloading', 'Found': 'downloading', 'Chosen': 'extracting',
              'Extracting': 'extracting', 'Installing': 'installing', 'Unpacking': 'installing',
              'Configuring': 'configuring', 'Base': 'done'}

    def __init__(self, image, mirror):
        self.image = image
        self.mirror = mirror
        self.tag = '[%s]' % image.suite

    def build(self):
        image = self.image
        lock = os.path.join(image.cache_dir, 'locks', 'image-%s.lock' % image.suite)
        with flocked(lock, 'the %s image build' % image.suite):
            if image.ready():
                say('%s image %s is cached (built by another run meanwhile)' % (self.tag, image.key))
                return
            work = os.path.join(image.cache_dir, 'build', '%s-%s' % (image.suite, image.key))
            shutil.rmtree(work, ignore_errors=True)
            os.makedirs(work)
            started = time.time()
            try:
                self._build_in(work)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                shutil.rmtree(image.dir + '.tmp', ignore_errors=True)
                raise
            shutil.rmtree(work, ignore_errors=True)
            say('%s image built in %s: %s' % (self.tag, fmt_seconds(time.time() - started), image.dir))

    def _build_in(self, work):
        image = self.image
        rootfs = os.path.join(work, 'rootfs')
        debs = os.path.join(image.cache_dir, 'debs', image.suite)
        os.makedirs(debs, exist_ok=True)
        cmd = ['debootstrap', '--variant=minbase', '--include=' + ','.join(PACKAGES),
               '--cache-dir=' + debs, image.suite, rootfs, self.mirror]
        say('%s debootstrap %s from %s' % (self.tag, image.suite, self.mirror))
        log_path = os.path.join(work, 'debootstrap.out')
        self._run_debootstrap(cmd, log_path, rootfs)
        say('%s configuring the guest (network, SSH key, services)' % self.tag)
        configure_rootfs(rootfs, image.pubkey)
        kernels = sorted(n for n in os.listdir(os.path.join(rootfs, 'boot')) if n.startswith('vmlinuz-'))
        if not kernels:
            raise LabError('%s no kernel in %s/boot after debootstrap' % (self.tag, rootfs))
        release = kernels[-1][len('vmlinuz-'):]
        tmp = image.dir + '.tmp'
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        shutil.copyfile(os.path.join(rootfs, 'boot', 'vmlinuz-' + release), os.path.join(tmp, 'vmlinuz'))
        shutil.copyfile(os.path.join(rootfs, 'boot', 'initrd.img-' + release), os.path.join(tmp, 'initrd.img'))
        say('%s making the ext4 disk (mke2fs -d, %s)' % (self.tag, DISK_SIZE))
        result = run(['mke2fs', '-q', '-F', '-t', 'ext4', '-L', 'samepage-lab', '-d', rootfs,
                      os.path.join(tmp, 'disk.img'), DISK_SIZE])
        if result.returncode != 0:
            raise LabError('%s mke2fs failed:\n%s' % (self.tag, indent(result.stdout)))
        info = dict(recipe(image.suite, image.pubkey), key=image.key, kernel_release=release,
                    built=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), mirror=self.mirror)
        del info['configure']
        with open(os.path.join(tmp, 'image.json'), 'w') as handle:
            json.dump(info, handle, indent=2, sort_keys=True)
        shutil.rmtree(image.dir, ignore_errors=True)
        os.rename(tmp, image.dir)

    def _run_debootstrap(self, cmd, log_path, rootfs):
        env = dict(os.environ, LC_ALL='C', DEBIAN_FRONTEND='noninteractive')
        started = time.time()
        last_phase = None
        last_said = 0
        counts = {}
        with open(log_path, 'w') as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    universal_newlines=True, env=env)
            try:
                for line in proc.stdout:
                    log.write(line)
                    match = re.match(r'I: (\w+)', line)
                    if not match:
                        continue
                    phase = self.PHASES.get(match.group(1), last_phase or 'preparing')
                    counts[phase] = counts.get(phase, 0) + 1
                    now = time.time()
                    if phase != last_phase or now - last_said > 15:
                        detail = line[3:].strip()
                        say('%s %s: %s  (%s)' % (self.tag, phase, detail[:80], fmt_seconds(now - started)))
                        last_phase, last_said = phase, now
                proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        if proc.returncode != 0:
            detail = tail(os.path.join(rootfs, 'debootstrap', 'debootstrap.log'), 15)
            raise LabError('%s debootstrap failed (exit %d). Last output:\n%s\ndebootstrap.log:\n%s'
                           % (self.tag, proc.returncode, indent(tail(log_path, 15)), indent(detail)))


def build_images(cache_dir, suites, pubkey):
    """Build every missing image (in parallel), return {suite: Image}."""
    images = dict((suite, Image(cache_dir, suite, pubkey)) for suite in suites)
    todo = [img for img in images.values() if not img.ready()]
    for img in images.values():
        if img.ready():
            say('[%s] image %s cached (Debian %d, kernel %s): %s'
                % (img.suite, img.key, SUITES[img.suite]['debian'], img.info().get('kernel_release'), img.dir))
    if not todo:
        return images
    if os.geteuid() != 0:
        raise LabError('building the images needs root (debootstrap); run `sudo %s build` once' % sys.argv[0])
    ensure_tools(BUILD_TOOLS)
    mirror = debian_mirror()
    say('building %d image(s) in parallel: %s (cache %s)'
        % (len(todo), ', '.join(i.suite for i in todo), cache_dir))
    errors = []

    def work(img):
        try:
            Builder(img, mirror).build()
        except BaseException as exc:  # reported below, after every build thread has ended
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(img,), name='build-' + img.suite) for img in todo]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        for exc in errors:
            if not isinstance(exc, LabError):
                raise exc
        raise LabError('image build failed:\n' + '\n'.join(str(e) for e in errors))
    prune_images(cache_dir, images)
    return images


def images_in_use():
    """Image directories that a running QEMU (of any lab) boots from."""
    used = set()
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            args = proc_cmdline(int(entry))
            if args and 'qemu-system' in os.path.basename(args[0]):
                for arg in args:
                    if arg.startswith('file=') and '/images/' in arg:
                        used.add(os.path.dirname(arg[len('file='):].split(',', maxsplit=1)[0]))
    return used


def prune_images(cache_dir, keep):
    """Remove images of older recipes that no running guest uses."""
    images_dir = os.path.join(cache_dir, 'images')
    keep_dirs = set(img.dir for img in keep.values())
    used = images_in_use()
    for name in sorted(os.listdir(images_dir)):
        path = os.path.join(images_dir, name)
        suite = name.split('-', maxsplit=1)[0]
        if suite in keep and path not in keep_dirs and path not in used and not name.endswith('.tmp'):
            shutil.rmtree(path, ignore_errors=True)
            say('removed the image of an older recipe: %s' % path)


# --------------------------------------------------------------------------------------------------
# Accelerator

def host_kvm_verdict():
    """(usable, reason): may KVM be tried at all on this machine?"""
    if not os.path.exists('/dev/kvm'):
        return False, '/dev/kvm does not exist'
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        return False, '/dev/kvm is not accessible to this user'
    if os.path.isdir('/sys/module/kvm_pvm'):
        return False, ('/dev/kvm belongs to the PVM hypervisor (kvm_pvm), under which stock Debian '
                       'kernels hang in their decompressor')
    if not (os.path.isdir('/sys/module/kvm_intel') or os.path.isdir('/sys/module/kvm_amd')):
        return False, 'neither kvm_intel nor kvm_amd is loaded'
    return True, '/dev/kvm with kvm_intel/kvm_amd'


def probe_boot(kernel, workdir, accel='kvm', seconds=KVM_PROBE_SECONDS):
    """Boot the guest kernel without a disk: True if it gets as far as printing its banner and memory.

    Where /dev/kvm cannot run a stock kernel (PVM: it hangs in the decompressor; or QEMU aborts on an
    MSR write), nothing is printed and the probe says False.
    """
    console = os.path.join(workdir, 'probe-%s.console' % accel)
    cmd = ['qemu-system-x86_64', '-accel', accel, '-cpu', 'host' if accel == 'kvm' else 'max', '-m', '256',
           '-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'file:' + console, '-no-reboot',
           '-kernel', kernel, '-append', 'console=ttyS0 panic=-1 earlyprintk=ttyS0']
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    ok = False
    try:
        deadline = time.time() + seconds
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
            try:
                with open(console, 'rb') as handle:
                    text = handle.read()
            except (IOError, OSError):
                continue
            if b'Linux version' in text and b'Memory:' in text:
                ok = True
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if os.path.exists(console):
            os.unlink(console)
    return ok


def choose_accel(kernel, workdir):
    """('kvm'|'tcg', reason). KVM only where it really boots a guest kernel; TCG otherwise."""
    forced = os.environ.get('SAMEPAGE_LAB_ACCEL', 'auto')
    if forced in ('kvm', 'tcg'):
        return forced, 'forced by SAMEPAGE_LAB_ACCEL=%s' % forced
    usable, reason = host_kvm_verdict()
    if os.environ.get('SAMEPAGE_LAB_KVM_PROBE') == 'always' and os.path.exists('/dev/kvm'):
        usable = True
    if not usable:
        return 'tcg', reason
    say('probing KVM: booting the guest kernel for up to %d s' % KVM_PROBE_SECONDS)
    if probe_boot(kernel, workdir, 'kvm'):
        return 'kvm', 'KVM booted the guest kernel (probe)'
    return 'tcg', 'a probe boot under KVM did not reach the kernel banner in %d s' % KVM_PROBE_SECONDS


# --------------------------------------------------------------------------------------------------
# Guests

class Guest(object):
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
            except (IOError, OSError, ValueError):
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
        except (IOError, OSError):
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
                raise LabError('%s: no SSH answer on 127.0.0.1:%d within %d s (accelerator %s).\n'
                               'Serial console (last lines of %s):\n%s'
                               % (self.name, self.port, timeout, self.accel, self.console,
                                  indent(tail(self.console))))
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


def _die_with_parent():
    """preexec_fn: have the kernel SIGTERM the child when the process that started it dies."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except Exception:  # best effort: the pid files and stop() are the real clean-up
        pass


# --------------------------------------------------------------------------------------------------
# The lab

class Lab(object):
    """A set of guests with a state directory, sharing an image cache with every other lab."""

    def __init__(self, state_dir=None, cache_dir=None, specs=None, host_merge=True):
        # host_merge: whether this machine's KSM may merge the guests' RAM (QEMU's mem-merge, on by
        # default: the seed's hypervisor scenario). The test lab turns it off, so that the system tests'
        # use of this machine's KSM and the lab never see each other's pages.
        self.host_merge = host_merge
        self.state_dir = os.path.abspath(state_dir or default_state_dir())
        self.cache_dir = os.path.abspath(cache_dir or default_cache_dir())
        self.state_path = os.path.join(self.state_dir, 'lab.json')
        self.inventory_dir = os.path.join(self.state_dir, 'inventory')
        self.inventory = os.path.join(self.inventory_dir, 'hosts.yml')
        self.key = os.path.join(self.cache_dir, 'ssh', 'lab_ed25519')
        self.accel = None
        self.accel_reason = None
        saved = self._load()
        if specs is None:
            specs = [GuestSpec.from_dict(g) for g in saved.get('guests', [])] or list(DEFAULT_GUESTS)
        self.guests = []
        saved_by_name = dict((g['name'], g) for g in saved.get('guests', []))
        for spec in specs:
            old = saved_by_name.get(spec.name, {})
            self.guests.append(Guest(self, spec, port=old.get('port'), pid=old.get('pid'),
                                     accel=old.get('accel'), kernel_release=old.get('kernel_release'),
                                     image_dir=old.get('image_dir')))
        self.accel = saved.get('accel')
        self.accel_reason = saved.get('accel_reason')

    def _load(self):
        try:
            with open(self.state_path) as handle:
                return json.load(handle)
        except (IOError, OSError, ValueError):
            return {}

    def save(self):
        os.makedirs(self.state_dir, exist_ok=True)
        data = {'guests': [g.to_dict() for g in self.guests], 'accel': self.accel,
                'accel_reason': self.accel_reason, 'cache_dir': self.cache_dir, 'key': self.key,
                'inventory': self.inventory}
        tmp = self.state_path + '.tmp'
        with open(tmp, 'w') as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.rename(tmp, self.state_path)

    def guest(self, name):
        for guest in self.guests:
            if guest.name == name or guest.name == 'lab-' + name or guest.group == name:
                return guest
        raise LabError('no guest %r in this lab (guests: %s)' % (name, ', '.join(g.name for g in self.guests)))

    @contextlib.contextmanager
    def locked(self):
        with flocked(os.path.join(self.state_dir, 'lab.lock'), 'the lab in %s' % self.state_dir):
            yield

    # ---- build / up / down

    def build(self):
        ensure_tools(['ssh-keygen'])
        self.key, pubkey = ssh_keypair(self.cache_dir)
        suites = sorted(set(g.suite for g in self.guests))
        return build_images(self.cache_dir, suites, pubkey)

    def up(self, tie_to_parent=False, timeout=BOOT_TIMEOUT):
        """Boot every guest that is not running; wait for SSH; write the inventory."""
        ensure_tools(BOOT_TOOLS)
        images = self.build()
        with self.locked():
            todo = [g for g in self.guests if not (g.running() and g.answers())]
            for guest in todo:
                guest.stop()
            if not todo:
                say('all %d guests already running' % len(self.guests))
                self.write_inventory()
                return self.guests
            os.makedirs(self.state_dir, exist_ok=True)
            if self.accel is None or not any(g.running() for g in self.guests):
                any_image = images[todo[0].suite]
                self.accel, self.accel_reason = choose_accel(any_image.kernel, self.state_dir)
            say('accelerator: %s (%s)' % (self.accel.upper(), self.accel_reason))
            started = time.time()
            try:
                taken = set(g.port for g in self.guests if g.running())
                for guest in todo:
                    guest.port = self._pick_port(taken)
                    taken.add(guest.port)
                    guest.start(images[guest.suite], self.accel, tie_to_parent=tie_to_parent)
                    say('%s: started QEMU pid %d (Debian %d, %d MiB, %d vCPU%s, %s), SSH on 127.0.0.1:%d'
                        % (guest.name, guest.pid, guest.debian, guest.spec.memory_mib, guest.spec.cpus,
                           's' if guest.spec.cpus > 1 else '',
                           '%d NUMA nodes' % guest.numa_nodes if guest.numa_nodes > 1 else 'one NUMA node',
                           guest.port))
                self.save()
                self._wait_all(todo, timeout)
            except BaseException:
                say('bringing the lab up failed: stopping the guests it started')
                for guest in todo:
                    guest.stop()
                self.save()
                raise
            say('%d guest(s) up in %s' % (len(todo), fmt_seconds(time.time() - started)))
            self.save()
            self.write_inventory()
            return self.guests

    def _pick_port(self, taken):
        base = os.environ.get('SAMEPAGE_LAB_PORT_BASE')
        if base:
            port = int(base)
            while port in taken or port_in_use(port):
                port += 1
            return port
        while True:
            port = free_port()
            if port not in taken:
                return port

    def _wait_all(self, guests, timeout):
        errors = []

        def wait(guest):
            try:
                guest.wait_ssh(timeout=timeout)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=wait, args=(g,), name='wait-' + g.name) for g in guests]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise LabError('\n\n'.join(str(e) for e in errors))

    def down(self, quiet=False):
        """Stop every guest of this lab (only processes it started), free the ports; True if any ran."""
        stopped = []
        with self.locked():
            for guest in self.guests:
                port = guest.port
                pids = guest.stop()
                if pids:
                    stopped.append(guest)
                    if not quiet:
                        say('%s: stopped QEMU pid %s; port %s %s' % (
                            guest.name, ', '.join(str(p) for p in pids), port,
                            'still in use!' if port and port_in_use(port) else 'free'))
                guest.pid = None
            # Guests recorded under another name (an older lab spec) in the same state directory.
            guests_dir = os.path.join(self.state_dir, 'guests')
            known = set(g.name for g in self.guests)
            if os.path.isdir(guests_dir):
                for name in sorted(os.listdir(guests_dir)):
                    if name not in known:
                        stray = Guest(self, GuestSpec(name, 'bookworm', 'dense'))
                        if stray.stop():
                            stopped.append(stray)
                            if not quiet:
                                say('%s: stopped a guest left from an earlier lab' % name)
            if os.path.isdir(self.state_dir):
                self.save()
        if not quiet and not stopped:
            say('no guest of the lab in %s was running' % self.state_dir)
        return bool(stopped)

    # ---- inventory

    def write_inventory(self):
        os.makedirs(self.inventory_dir, exist_ok=True)
        lines = [
            '# Written by lab/labctl.py for the lab in %s (rewritten on every `up`).' % self.state_dir,
            '# Groups are those of inventory/example and site.yml; group_vars links to inventory/example.',
            'all:',
            '  vars:',
            '    ansible_host: 127.0.0.1',
            '    ansible_user: root',
            '    ansible_ssh_private_key_file: %s' % json.dumps(self.key),
            '    ansible_ssh_common_args: %s' % json.dumps(
                '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes'),
            '    ansible_ssh_pipelining: true',
            '    ansible_python_interpreter: /usr/bin/python3',
            '  children:',
            '    %s:' % PARENT_GROUP,
            '      children:',
        ]
        groups = []
        for guest in self.guests:
            if guest.group not in groups:
                groups.append(guest.group)
        for group in groups:
            lines += ['        %s:' % group, '          hosts:']
            for guest in self.guests:
                if guest.group != group:
                    continue
                lines += [
                    '            %s:' % guest.name,
                    '              ansible_port: %d' % guest.port,
                    '              lab_suite: %s' % guest.suite,
                    '              lab_debian: %d' % guest.debian,
                    '              lab_numa_nodes: %d' % guest.numa_nodes,
                ]
        tmp = self.inventory + '.tmp'
        with open(tmp, 'w') as handle:
            handle.write('\n'.join(lines) + '\n')
        os.rename(tmp, self.inventory)
        link = os.path.join(self.inventory_dir, 'group_vars')
        target = os.path.join(REPO, 'inventory', 'example', 'group_vars')
        if os.path.islink(link) and os.readlink(link) != target:
            os.unlink(link)
        if not os.path.lexists(link):
            os.symlink(target, link)
        return self.inventory

    def collections_path(self):
        """A directory with ansible_collections/samepage/ksm linked to this clone."""
        root = os.path.join(self.state_dir, 'collections')
        link = os.path.join(root, 'ansible_collections', 'samepage', 'ksm')
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.islink(link) and os.readlink(link) != REPO:
            os.unlink(link)
        if not os.path.lexists(link):
            os.symlink(REPO, link)
        return root

    def ansible_env(self):
        env = dict(os.environ)
        paths = [self.collections_path()] + [p for p in env.get('ANSIBLE_COLLECTIONS_PATH', '').split(':') if p]
        env.update({
            'ANSIBLE_COLLECTIONS_PATH': ':'.join(paths),
            'ANSIBLE_HOST_KEY_CHECKING': 'False',
            'ANSIBLE_NOCOLOR': env.get('ANSIBLE_NOCOLOR', '1' if not sys.stdout.isatty() else '0'),
            'ANSIBLE_RETRY_FILES_ENABLED': 'False',
        })
        return env

    def status(self):
        rows = []
        for guest in self.guests:
            running = guest.running()
            rows.append((guest, running, running and guest.answers(timeout=10)))
        return rows


# --------------------------------------------------------------------------------------------------
# Demo

WORKLOAD_GUEST_PATH = '/usr/local/lib/samepage-lab/merge_workload.py'
WORKLOAD_UNIT = 'samepage-lab-workload'


def find_ansible_playbook(cache_dir, create=True):
    """ansible-playbook from SAMEPAGE_VENV, from PATH, or from a venv the lab makes in its cache."""
    venv = os.environ.get('SAMEPAGE_VENV')
    candidates = []
    if venv:
        candidates.append(os.path.join(venv, 'bin', 'ansible-playbook'))
    candidates.append(os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'))
    found = shutil.which('ansible-playbook')
    if found:
        candidates.append(found)
    lab_venv = os.path.join(cache_dir, 'venv')
    candidates.append(os.path.join(lab_venv, 'bin', 'ansible-playbook'))
    for candidate in candidates:
        if os.path.exists(candidate) and os.access(candidate, os.X_OK):
            return candidate
    if not create:
        raise LabError('ansible-playbook not found (set SAMEPAGE_VENV or put it on PATH)')
    say('no ansible-playbook found: making a venv with ansible-core in %s' % lab_venv)
    result = run([sys.executable, '-m', 'venv', lab_venv])
    if result.returncode == 0:
        result = run([os.path.join(lab_venv, 'bin', 'pip'), 'install', '-q', 'ansible-core'])
    if result.returncode != 0:
        shutil.rmtree(lab_venv, ignore_errors=True)
        raise LabError('could not install ansible-core into %s:\n%s' % (lab_venv, indent(result.stdout[-2000:])))
    return os.path.join(lab_venv, 'bin', 'ansible-playbook')


def workload_source():
    """The merge workload copied into guests (tests/support/merge_workload.py, standard library only)."""
    path = os.path.join(REPO, 'tests', 'support', 'merge_workload.py')
    if not os.path.exists(path):
        raise LabError('%s is missing: the demo copies it into the guests as their workload' % path)
    with open(path) as handle:
        return handle.read(), 'tests/support/merge_workload.py'


def start_workload(guest, mib):
    source, origin = workload_source()
    guest.ssh('mkdir -p %s && cat > %s && chmod 755 %s' % (
        os.path.dirname(WORKLOAD_GUEST_PATH), WORKLOAD_GUEST_PATH, WORKLOAD_GUEST_PATH), input=source)
    guest.ssh('systemctl stop %s 2>/dev/null; systemctl reset-failed %s 2>/dev/null; '
              'systemd-run --unit=%s --description="samepage.ksm lab: %d MiB of duplicate mergeable pages" '
              '/usr/bin/python3 %s --mib %d' % (WORKLOAD_UNIT, WORKLOAD_UNIT, WORKLOAD_UNIT, mib,
                                                WORKLOAD_GUEST_PATH, mib))
    return origin


GUEST_REPORT_SCRIPT = r'''
import json, os
d = '/sys/kernel/mm/ksm'
out = {'ksm': {}, 'services': {}, 'nodes': 0}
for name in sorted(os.listdir(d)):
    try:
        out['ksm'][name] = open(os.path.join(d, name)).read().strip()
    except OSError:
        pass
for unit in ('ksm', 'ksmtuned', 'samepage-lab-workload'):
    out['services'][unit] = [os.popen('systemctl is-active %s.service 2>/dev/null' % unit).read().strip(),
                             os.popen('systemctl is-enabled %s.service 2>/dev/null' % unit).read().strip()]
nd = '/sys/devices/system/node'
out['nodes'] = len([n for n in os.listdir(nd) if n.startswith('node')]) if os.path.isdir(nd) else 1
out['kernel'] = os.uname().release
out['page'] = os.sysconf('SC_PAGE_SIZE')
print(json.dumps(out))
'''


def guest_report(guest):
    result = guest.ssh('python3 -', input=GUEST_REPORT_SCRIPT, timeout=60)
    return json.loads(result.stdout)


def human(number):
    number = float(number)
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if abs(number) < 1024 or unit == 'GiB':
            return ('%.0f %s' if unit == 'B' else '%.1f %s') % (number, unit)
        number /= 1024.0
    return '%.1f GiB' % number


def chosen(text):
    """The selected word of a sysfs choice file: '[none] scan-time' -> 'none'."""
    match = re.search(r'\[([^]]+)\]', text)
    return match.group(1) if match else text


def saved_bytes(report):
    ksm = report['ksm']
    if 'general_profit' in ksm:
        return int(ksm['general_profit']), 'general_profit'
    return int(ksm.get('pages_sharing', 0)) * report['page'], 'pages_sharing x page size'


def print_report(lab, reports):
    print()
    print('What KSM does on each guest')
    print('=' * 27)
    for guest in lab.guests:
        report = reports.get(guest.name)
        if report is None:
            print('%s: no answer' % guest.name)
            continue
        ksm = report['ksm']
        amount, source = saved_bytes(report)
        svc = report['services']
        print('%s  [group %s]  Debian %d, kernel %s, %d NUMA node%s' % (
            guest.name, guest.group, guest.debian, report['kernel'], report['nodes'],
            's' if report['nodes'] != 1 else ''))
        print('  settings : run=%s pages_to_scan=%s sleep_millisecs=%s merge_across_nodes=%s%s' % (
            ksm.get('run'), ksm.get('pages_to_scan'), ksm.get('sleep_millisecs'),
            ksm.get('merge_across_nodes', 'n/a'),
            ' advisor_mode=%s' % chosen(ksm['advisor_mode']) if 'advisor_mode' in ksm else ''))
        print('  services : ksm %s/%s, ksmtuned %s/%s, demo workload %s' % (
            svc['ksm'][0], svc['ksm'][1], svc['ksmtuned'][0], svc['ksmtuned'][1],
            svc['samepage-lab-workload'][0]))
        print('  merging  : pages_shared=%s pages_sharing=%s full_scans=%s' % (
            ksm.get('pages_shared'), ksm.get('pages_sharing'), ksm.get('full_scans')))
        print('  saved    : %s (%s)' % (human(amount), source))
    print()


def wait_for_merging(lab, expect, timeout):
    """Poll the guests until every guest in expect shares pages (or timeout); return the last reports."""
    deadline = time.time() + timeout
    reports = {}
    while True:
        pending = []
        for guest in lab.guests:
            try:
                reports[guest.name] = guest_report(guest)
            except (LabError, subprocess.TimeoutExpired, ValueError):
                reports[guest.name] = None
                pending.append(guest.name)
                continue
            if guest.name in expect and int(reports[guest.name]['ksm'].get('pages_sharing', 0)) == 0:
                pending.append(guest.name)
        if not pending or time.time() > deadline:
            return reports, pending
        say('waiting for KSM to merge the workload on %s' % ', '.join(pending))
        time.sleep(10)


HOST_LOCK = '/tmp/samepage-ksm-host.lock'


def host_ksm_demo(lab, ansible_playbook, seconds):
    """Apply ksm_sysfs to this machine, watch it merge the guests' RAM, then put every value back.

    Holds the host KSM lock (HOST_LOCK) for the whole time, like every writer of /sys/kernel/mm/ksm in
    this project, and restores what it changed before returning.
    """
    ansible = os.path.join(os.path.dirname(ansible_playbook), 'ansible')
    env = lab.ansible_env()
    ksm_dir = '/sys/kernel/mm/ksm'
    if not os.path.isdir(ksm_dir):
        say('this machine has no %s: skipping the host KSM part' % ksm_dir)
        return

    def module(name, args):
        python = os.path.join(os.path.dirname(ansible_playbook), 'python')
        cmd = [ansible, 'localhost', '-c', 'local', '-i', 'localhost,', '-m', 'samepage.ksm.' + name,
               '-a', json.dumps(args), '-e', 'ansible_python_interpreter=%s' % (
                   python if os.path.exists(python) else sys.executable)]
        result = run(cmd, env=dict(env, ANSIBLE_LOCALHOST_WARNING='False'))
        if result.returncode != 0:
            raise LabError('samepage.ksm.%s on this machine failed:\n%s' % (name, indent(result.stdout.strip())))
        msg = re.search(r'^\s*"msg": "(.*)",?$', result.stdout, re.M)
        say('  samepage.ksm.%s: %s' % (name, msg.group(1) if msg else 'ok'))

    def read(name):
        with open(os.path.join(ksm_dir, name)) as handle:
            return handle.read().strip()

    names = ('run', 'pages_to_scan', 'sleep_millisecs')
    with flocked(HOST_LOCK, 'the host KSM lock'):
        before = dict((n, read(n)) for n in names)
        say('this machine before: %s' % ' '.join('%s=%s' % kv for kv in sorted(before.items())))
        try:
            say("applying samepage.ksm.ksm_sysfs to this machine: run=true pages_to_scan=5000")
            module('ksm_sysfs', {'run': True, 'pages_to_scan': 5000, 'sleep_millisecs': 20})
            deadline = time.time() + seconds
            while time.time() < deadline:
                time.sleep(10)
                parts = []
                for guest in lab.guests:
                    for pid in guest.recorded_pids():
                        try:
                            with open('/proc/%d/ksm_merging_pages' % pid) as handle:
                                pages = int(handle.read().strip())
                        except (IOError, OSError, ValueError):
                            pages = 0
                        parts.append('%s %s' % (guest.name, human(pages * os.sysconf('SC_PAGE_SIZE'))))
                profit = read('general_profit') if os.path.exists(os.path.join(ksm_dir, 'general_profit')) else None
                say('host KSM: pages_sharing=%s%s; merged per QEMU: %s' % (
                    read('pages_sharing'), ' general_profit=%s' % human(int(profit)) if profit else '',
                    ', '.join(parts)))
        finally:
            say('putting this machine back: unmerge (ksm_unmerge), then %s'
                % ' '.join('%s=%s' % kv for kv in sorted(before.items())))
            module('ksm_unmerge', {'ksmd': 'stopped', 'force': True})
            module('ksm_sysfs', {'run': before['run'] == '1', 'pages_to_scan': int(before['pages_to_scan']),
                                 'sleep_millisecs': int(before['sleep_millisecs'])})


def demo(lab, workload_mib=128, host_ksm=False, host_seconds=100, merge_timeout=240):
    started = time.time()
    say('demo: setting up (tools, images, guests)')
    ensure_tools(BOOT_TOOLS + BUILD_TOOLS)
    playbook_bin = find_ansible_playbook(lab.cache_dir)
    lab.up()
    # The hosts are converged first and their "VMs" start afterwards, as on a new KVM host. The other way
    # round the image's ksmd merges the workload first, and site.yml then (rightly) refuses to change
    # max_page_sharing and merge_across_nodes while pages are shared (ksm_unmerge_if_busy is off).
    say('demo: ansible-playbook -i %s site.yml' % lab.inventory)
    cmd = [playbook_bin, '-i', lab.inventory, os.path.join(REPO, 'site.yml')]
    result = subprocess.run(cmd, env=lab.ansible_env(), cwd=REPO, check=False)
    if result.returncode != 0:
        raise LabError('ansible-playbook site.yml failed (exit %d); the lab is still up for a look: '
                       '`%s status`, `%s down` to stop it' % (result.returncode, sys.argv[0], sys.argv[0]))
    for guest in lab.guests:
        origin = start_workload(guest, workload_mib)
        say('%s: started %d MiB of duplicate mergeable memory (%s, unit %s)'
            % (guest.name, workload_mib, origin, WORKLOAD_UNIT))
    expect = [g.name for g in lab.guests if g.group != 'secure']
    reports, pending = wait_for_merging(lab, expect, merge_timeout)
    print_report(lab, reports)
    if pending:
        say('note: no merged pages yet on %s after %d s' % (', '.join(pending), merge_timeout))
    if host_ksm:
        host_ksm_demo(lab, playbook_bin, host_seconds)
    say('demo finished in %s' % fmt_seconds(time.time() - started))
    print_explore(lab, playbook_bin)


OWNER_FILE = 'owner.pid'   # the process that holds a lab started by `run` (tests/lab/conftest.py sweeps)


def run_with_lab(lab, command):
    """Boot the lab, run command with SAMEPAGE_LAB_REUSE set to its state directory, stop the lab.

    The guests are tied to this process (the kernel ends them if it dies), SIGTERM/SIGHUP/SIGINT are
    passed on to the command, and the lab is stopped however the command ends. Returns its exit status.
    """
    if not command:
        raise LabError('run: no command given (labctl run -- COMMAND [ARGS...])')
    os.makedirs(lab.state_dir, exist_ok=True)
    with open(os.path.join(lab.state_dir, OWNER_FILE), 'w') as handle:
        handle.write('%d\n' % os.getpid())
    child = None
    starting = []       # non-empty while the command is being started
    pending = []        # a signal that came meanwhile, passed on once it runs

    def forward(signum, frame):
        if child is not None and child.poll() is None:
            child.send_signal(signum)
        elif starting:
            pending.append(signum)
        else:           # while the lab boots: stop booting (the finally below stops the guests)
            raise KeyboardInterrupt('signal %d' % signum)

    previous = dict((sig, signal.signal(sig, forward)) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT))
    try:
        lab.up(tie_to_parent=True)
        say('running %s' % ' '.join(shlex.quote(arg) for arg in command))
        env = dict(os.environ, SAMEPAGE_LAB_REUSE=lab.state_dir, SAMEPAGE_LAB_INVENTORY=lab.inventory)
        starting.append(True)
        child = subprocess.Popen(command, env=env)
        del starting[:]
        if pending:
            child.send_signal(pending[-1])
        return child.wait()     # a signal meanwhile goes to the child (forward), which then ends
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        lab.down()
        try:
            os.unlink(os.path.join(lab.state_dir, OWNER_FILE))
        except OSError:
            pass


def print_explore(lab, ansible_playbook='ansible-playbook'):
    me = os.path.relpath(os.path.abspath(__file__))
    env = ''
    if lab.state_dir != default_state_dir():
        env = 'SAMEPAGE_LAB_STATE=%s ' % shlex.quote(lab.state_dir)
    print()
    print('The lab is still running. To explore it:')
    print('  %spython3 %s status' % (env, me))
    for guest in lab.guests:
        print('  %spython3 %s ssh %-14s # Debian %d, group %s' % (env, me, guest.name, guest.debian, guest.group))
    print('  ANSIBLE_COLLECTIONS_PATH=%s %s -i %s site.yml'
          % (lab.collections_path(), ansible_playbook, lab.inventory))
    print('To stop every guest and free its ports:')
    print('  make lab-down      (or: %spython3 %s down)' % (env, me))


# --------------------------------------------------------------------------------------------------
# CLI

def _install_signal_handlers():
    def handler(signum, frame):
        raise KeyboardInterrupt('signal %d' % signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='labctl', description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--state', help='lab state directory (default: $SAMEPAGE_LAB_STATE or %s)'
                        % default_state_dir())
    parser.add_argument('--cache', help='image cache (default: $SAMEPAGE_LAB_CACHE or %s)' % default_cache_dir())
    sub = parser.add_subparsers(dest='command')
    sub.add_parser('build', help='build the guest images (or reuse them from the cache)')
    p_up = sub.add_parser('up', help='boot the guests and write the inventory')
    p_up.add_argument('--timeout', type=int, default=BOOT_TIMEOUT, help='seconds to wait for SSH per guest')
    sub.add_parser('down', help='stop every guest of the lab and free its ports')
    sub.add_parser('status', help='show the guests')
    p_ssh = sub.add_parser('ssh', help='SSH into a guest (name or group)')
    p_ssh.add_argument('guest')
    p_ssh.add_argument('cmd', nargs=argparse.REMAINDER)
    p_inv = sub.add_parser('inventory', help='print the inventory path (--show: its content)')
    p_inv.add_argument('--show', action='store_true')
    p_run = sub.add_parser('run', help='boot the guests, run a command against them, stop the guests')
    p_run.add_argument('--no-host-merge', dest='host_merge', action='store_false',
                       help="keep this machine's KSM away from the guests' RAM (QEMU mem-merge=off)")
    p_run.add_argument('cmd', nargs=argparse.REMAINDER, help='-- COMMAND [ARGS...]')
    p_demo = sub.add_parser('demo', help='set up, boot, run site.yml, show what KSM does')
    p_demo.add_argument('--workload-mib', type=int, default=128,
                        help='MiB of duplicate mergeable memory per guest (default 128)')
    p_demo.add_argument('--host-ksm', action='store_true',
                        help="also apply ksm_sysfs to THIS machine for a while to merge the guests' RAM "
                             '(changes its kernel settings; they are put back afterwards)')
    p_demo.add_argument('--host-seconds', type=int, default=100, help='how long to watch the host merge')
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    if args.command != 'run':
        _install_signal_handlers()
    lab = Lab(state_dir=args.state, cache_dir=args.cache, host_merge=getattr(args, 'host_merge', True))
    try:
        if args.command == 'run':
            command = args.cmd[1:] if args.cmd[:1] == ['--'] else args.cmd
            return run_with_lab(lab, command)
        if args.command == 'build':
            started = time.time()
            images = lab.build()
            for suite, image in sorted(images.items()):
                info = image.info()
                say('%s: Debian %d, kernel %s, %s' % (suite, SUITES[suite]['debian'],
                                                      info.get('kernel_release'), image.dir))
            say('images ready in %s' % fmt_seconds(time.time() - started))
        elif args.command == 'up':
            lab.up(timeout=args.timeout)
            say('inventory: %s' % lab.inventory)
            print_explore(lab)
        elif args.command == 'down':
            lab.down()
        elif args.command == 'status':
            print('lab state %s, image cache %s, accelerator %s'
                  % (lab.state_dir, lab.cache_dir, lab.accel or 'n/a'))
            for guest, running, answers in lab.status():
                if answers:
                    state = 'ssh ok'
                else:
                    state = 'running, ssh not answering' if running else 'stopped'
                print('  %-14s %-9s Debian %-2d %-22s NUMA nodes %d  port %-6s %s' % (
                    guest.name, guest.group, guest.debian, guest.kernel_release or '', guest.numa_nodes,
                    guest.port or '-', state))
            if os.path.exists(lab.inventory):
                print('inventory: %s' % lab.inventory)
        elif args.command == 'ssh':
            guest = lab.guest(args.guest)
            if not guest.running():
                raise LabError('%s is not running (python3 %s up)' % (guest.name, sys.argv[0]))
            cmd = ' '.join(args.cmd) if args.cmd else None
            os.execvp('ssh', guest.ssh_command(cmd, tty=cmd is None and sys.stdin.isatty()))
        elif args.command == 'inventory':
            if not os.path.exists(lab.inventory):
                raise LabError('no inventory yet: bring the lab up first')
            print(lab.inventory)
            if args.show:
                with open(lab.inventory) as handle:
                    print(handle.read())
        elif args.command == 'demo':
            demo(lab, workload_mib=args.workload_mib, host_ksm=args.host_ksm, host_seconds=args.host_seconds)
    except LabError as exc:
        sys.stderr.write('labctl %s: error: %s\n' % (args.command, exc))
        return 1
    except KeyboardInterrupt:
        sys.stderr.write('labctl %s: interrupted\n' % args.command)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
