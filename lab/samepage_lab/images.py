# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Guest images: the recipe and its key, the build (debootstrap, mke2fs -d) and the cache that keeps them."""

import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import time

from .common import LabError, flocked, fmt_seconds, in_parallel, indent, proc_cmdline, run, say, tail
from .hosttools import BUILD_TOOLS, ensure_tools


# Bump to rebuild every image even if nothing else in the recipe changed.
RECIPE_VERSION = 1

SUITES = {
    'bookworm': {'debian': 12, 'kernel': '6.1'},
    'trixie': {'debian': 13, 'kernel': '6.12'},
}

PACKAGES = (
    'systemd-sysv', 'udev', 'dbus', 'openssh-server', 'python3', 'linux-image-amd64',
    'initramfs-tools', 'iproute2', 'ksmtuned', 'procps', 'kmod',
    # tests/lab/test_lab_metrics.py: node_exporter serves samepage.ksm.ksm_metrics' file, curl scrapes it
    'prometheus-node-exporter', 'curl',
)

DISK_SIZE = '3G'


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
        except OSError:
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


class Image:
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


class Builder:
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
    images = {suite: Image(cache_dir, suite, pubkey) for suite in suites}
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
    errors = in_parallel(lambda img: Builder(img, mirror).build(), todo, lambda img: 'build-' + img.suite)
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
