# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every part of the lab shares: its error, progress output, default paths, locks, processes, ports."""

import contextlib
import fcntl
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
LAB_DIR = os.path.dirname(PACKAGE_DIR)
REPO = os.path.dirname(LAB_DIR)
LABCTL = os.path.join(LAB_DIR, 'labctl.py')   # the entry point, as shown to the person running the lab


class LabError(Exception):
    """A failure with a message meant for the person running the lab."""


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
    except OSError:
        return '(no %s)' % path
    text = re.sub(r'\x1b\[[0-9;?]*[A-Za-z]', '', text).replace('\r', '')
    return '\n'.join(text.splitlines()[-lines:])


def indent(text, prefix='    '):
    return '\n'.join(prefix + line for line in text.splitlines())


def fmt_seconds(seconds):
    if seconds < 90:
        return '%.0f s' % seconds
    return '%d min %02d s' % (seconds // 60, seconds % 60)


def human(number):
    number = float(number)
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if abs(number) < 1024 or unit == 'GiB':
            return ('%.0f %s' if unit == 'B' else '%.1f %s') % (number, unit)
        number /= 1024.0
    return '%.1f GiB' % number


@contextlib.contextmanager
def flocked(path, what, shared=False):
    """Hold an flock on path; say so if somebody else holds it first."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle = open(path, 'a+')
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except OSError:
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


def in_parallel(function, items, thread_name):
    """Call function(item) for every item, each in a thread of its own (named thread_name(item)); once
    every thread has ended, return the exceptions they raised."""
    errors = []

    def call(item):
        try:
            function(item)
        except BaseException as exc:  # returned, after every thread has ended
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(item,), name=thread_name(item)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


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
    except OSError:
        return False


def proc_cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return handle.read().decode('utf-8', 'replace').split('\0')
    except OSError:
        return []
