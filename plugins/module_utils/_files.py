# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Files the collection owns on a host (the tuner's program, configuration and unit; ksmtuned.conf and the
libvirt hook): what they are, what they should be, and an all-or-nothing way to get there.

    files = FileSet({'/etc/ksmtuned.conf': text, '/etc/libvirt/hooks/qemu.d/x': None}, modes={...})
    files.changed()     # the paths whose content (or absence) differs
    files.write()       # stage every new file next to its target, then rename them all into place

A file's mode counts as part of what it should be: a file with the right text and the wrong mode is
rewritten. Text is UTF-8; a value of None means the file must not exist.
"""

import os
import stat
import tempfile

from ansible_collections.samepage.ksm.plugins.module_utils._errors import SamepageError

DEFAULT_MODE = 0o644


class FileError(SamepageError):
    """A file could not be written or removed."""


def read_text(path):
    """The file's text, or None when it does not exist or cannot be read."""
    try:
        with open(path, 'rb') as handle:
            return handle.read().decode('utf-8', 'replace')
    except OSError:
        return None


def file_mode(path):
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None


class FileSet:
    """Several files changed together: either every new file is in place, or none was renamed."""

    def __init__(self, wanted, modes=None, what='the files'):
        self.wanted = dict(wanted)                    # {path: text, or None for absent}
        self.modes = dict(modes or {})                # {path: mode}; DEFAULT_MODE otherwise
        self.what = what                              # named in error messages
        self.current = {path: read_text(path) for path in self.wanted}
        self.current_modes = {path: file_mode(path) for path in self.wanted}
        self.done = []                                # paths renamed into place or removed by write()

    def mode(self, path):
        return self.modes.get(path, DEFAULT_MODE)

    def differs(self, path):
        if self.current[path] != self.wanted[path]:
            return True
        return self.wanted[path] is not None and self.current_modes[path] != self.mode(path)

    def changed_files(self):
        return [path for path in sorted(self.wanted) if self.differs(path)]

    def changed(self):
        """What write() changes, as paths (a subclass may add more than files)."""
        return self.changed_files()

    def write(self):
        """Stage every new file next to its target first, then rename them all into place; then remove
        the files that must not exist. A failure while staging leaves every target as it was."""
        staged = []
        try:
            for path in self.changed_files():
                text = self.wanted[path]
                if text is None:
                    continue
                directory = os.path.dirname(path)
                if not os.path.isdir(directory):
                    os.makedirs(directory, 0o755)
                fd, temporary = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=directory)
                staged.append((temporary, path))
                with os.fdopen(fd, 'wb') as handle:
                    handle.write(text.encode('utf-8'))
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(temporary, self.mode(path))
        except OSError as err:
            for temporary, dummy in staged:
                try:
                    os.unlink(temporary)
                except OSError:
                    pass
            raise FileError('Cannot write %s: %s. Nothing was changed.' % (
                err.filename or self.what, err.strerror or err))
        removals = [path for path in self.changed_files() if self.wanted[path] is None and self.current[path] is not None]
        try:
            for temporary, path in staged:
                os.rename(temporary, path)
                self.done.append(path)
            for path in removals:
                os.unlink(path)
                self.done.append(path)
        except OSError as err:
            for temporary, path in staged:
                if path not in self.done:
                    try:
                        os.unlink(temporary)
                    except OSError:
                        pass
            raise FileError('Cannot install %s: %s' % (err.filename or self.what, err.strerror or err))

    @staticmethod
    def remove_empty_dirs(paths):
        for directory in sorted(set(os.path.dirname(path) for path in paths), key=len, reverse=True):
            try:
                os.rmdir(directory)
            except OSError:
                pass

    def diff(self, paths=None):
        """Ansible's diff list: one entry per path, before and after ('' for a file that does not exist)."""
        return [dict(before_header=path, after_header=path, before=self.current[path] or '',
                     after=self.wanted[path] or '')
                for path in (paths if paths is not None else sorted(self.wanted))]
