# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The real programs a system test needs (QEMU, libvirt), installed from Debian's packages when missing, and
the ending of the processes a test starts from them (end_process).

    reason = require({'qemu-system-x86_64': 'qemu-system-x86'})
    if reason:
        pytest.skip(reason)      # not root, or no apt-get: nothing could be installed

A missing program is installed with apt-get (as root, --no-install-recommends), one apt-get at a time on
the machine: the lock file is the one tools/ci.sh and the lab's host tools take. A failed install raises
RuntimeError with apt-get's words, so a test that needs the program errors instead of passing unseen.
On Debian, installing a daemon's package does not start it where policy-rc.d forbids it or systemd is not
PID 1; the tests start what they need themselves.
"""

import os
import shutil
import subprocess

APT_LOCK = '/var/lib/samepage-ksm-lab-apt.lock'   # tools/ci.sh APT_LOCK, lab/samepage_lab/hosttools.py
SEARCH_PATH = os.pathsep.join([os.environ.get('PATH', ''), '/usr/sbin', '/sbin'])


def which(command):
    return shutil.which(command, path=SEARCH_PATH)


def missing(programs):
    return [name for name in programs if not which(name)]


def require(programs):
    """Make sure every program of {program: Debian package} exists; None, or why it cannot be installed here."""
    absent = missing(programs)
    if not absent:
        return None
    packages = sorted(set(programs[name] for name in absent))
    if os.geteuid() != 0 or not shutil.which('apt-get') or not shutil.which('flock'):
        return '%s not installed, and installing %s needs root, apt-get and flock' % (
            ', '.join(absent), ' '.join(packages))
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    script = ('apt-get update -qq && apt-get install -y -qq --no-install-recommends %s' % ' '.join(packages))
    done = subprocess.run(['flock', APT_LOCK, 'sh', '-c', script], env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    still = missing(programs)
    if done.returncode != 0 or still:
        raise RuntimeError('apt-get could not install %s (for %s; exit status %d):\n%s' % (
            ' '.join(packages), ', '.join(still or absent), done.returncode,
            done.stdout.decode('utf-8', 'replace')[-3000:]))
    return None


def end_process(process, timeout=30):
    """End a child process this test started (subprocess.Popen) and close the pipes the test holds to it.

    Its standard input, when a pipe, is closed first: a child that ends at end of input (merge_workload.py
    --until-eof) ends on its own, as it would if the test died. Then SIGTERM, and SIGKILL if it has not
    exited within `timeout` seconds; it is reaped either way.
    """
    try:
        if process.stdin is not None:
            try:
                process.stdin.close()
            except BrokenPipeError:     # unwritten input, and the child has gone already
                pass
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
