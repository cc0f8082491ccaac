# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Option specs that several modules share, and the bounds of options the argument spec cannot express.

Each function here has a doc fragment of the same name in plugins/doc_fragments/_ksm.py (MEMORY_CHECK,
HOST_LOCK): a module that takes the options extends its argument_spec with the function and its
DOCUMENTATION with the fragment, so the two never drift apart.

Private to samepage.ksm. Standard library only.
"""

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm

# The longest wait for the host lock an option may ask for (seconds): an hour is already beyond any
# real unmerge; larger values are far more likely a typo than an intention.
LOCK_TIMEOUT_MAX = 3600


def memory_check():
    """memory_margin: the memory check that guards every unmerge (doc fragment MEMORY_CHECK)."""
    return {'memory_margin': dict(type='str', default='5%')}


def host_lock():
    """lock_timeout: the bounded wait for the host lock of KSM writers (doc fragment HOST_LOCK)."""
    return {'lock_timeout': dict(type='int', default=_ksm.LOCK_TIMEOUT)}


def lock_timeout(value):
    """The lock_timeout option checked: an integer from 0 to LOCK_TIMEOUT_MAX, else KsmError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= LOCK_TIMEOUT_MAX:
        raise _ksm.KsmError('Invalid value %r for lock_timeout: expected seconds from 0 to %d'
                            % (value, LOCK_TIMEOUT_MAX), option='lock_timeout')
    return value


def writer_lock(module, program):
    """The host lock for a task that writes KSM state; no lock in check mode (it only reads).

    A check-mode run predicts from one reading and changes nothing, so it cannot lose anybody's update;
    taking the lock would only make it wait behind real runs.
    """
    if module.check_mode:
        return _ksm.no_lock()
    return _ksm.host_lock(timeout=lock_timeout(module.params['lock_timeout']), who='samepage.ksm.%s' % program)
