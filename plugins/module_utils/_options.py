# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Option specs that several modules share, and the bounds of options the argument spec cannot express.

Each function here has a doc fragment of the same name in plugins/doc_fragments/_ksm.py (MEMORY_CHECK,
HOST_LOCK): a module that takes the options extends its argument_spec with the function and its
DOCUMENTATION with the fragment, so the two never drift apart.

new_module() builds the AnsibleModule of every samepage.ksm module: it refuses, naming the option,
the values ansible-core's own int conversion cannot take without a traceback or an enormous number.
run_writer() is the main() of a module that writes KSM state: its options checked, its task run under
the host lock, its result or failure reported (_errors.run_task).

Private to samepage.ksm. Standard library and ansible.module_utils only.
"""

import decimal

from ansible.module_utils import basic

from ansible_collections.samepage.ksm.plugins.module_utils import _errors
from ansible_collections.samepage.ksm.plugins.module_utils import _ksm

# The largest magnitude an int option may be written with (10^30): beyond every range the options have
# (the widest, the kernel's unsigned long, ends below 2*10^19), and small enough to convert at once.
INT_OPTION_DIGITS = 30

# The longest wait for the host lock an option may ask for (seconds): an hour is already beyond any
# real unmerge; larger values are far more likely a typo than an intention.
LOCK_TIMEOUT_MAX = 3600


def memory_check():
    """memory_margin: the memory check that guards every unmerge (doc fragment MEMORY_CHECK)."""
    return {'memory_margin': dict(type='str', default=_ksm.DEFAULT_MARGIN)}


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
    timeout = lock_timeout(module.params['lock_timeout'])   # checked in check mode too
    if module.check_mode:
        return _ksm.no_lock()
    return _ksm.host_lock(timeout=timeout, who='samepage.ksm.%s' % program)


def run_writer(module, program, task, partial):
    """_errors.run_task for a task that writes KSM state: the options the argument spec cannot check
    (memory_margin's syntax, lock_timeout) are checked before anything else, then task() runs under
    writer_lock(module, program)."""
    def locked():
        if 'memory_margin' in module.params:
            _ksm.parse_margin(module.params['memory_margin'], 0)
        with writer_lock(module, program):
            return task()
    _errors.run_task(module, locked, partial)


def _beyond_int(value):
    """Whether ansible-core's int conversion (Decimal, then int()) would raise OverflowError (an infinity)
    or build an enormous number ('1e999999999') from value, instead of refusing it cleanly."""
    if isinstance(value, bool) or isinstance(value, int) or not isinstance(value, (str, float)):
        return False
    try:
        number = decimal.Decimal(value.strip() if isinstance(value, str) else value)
    except (decimal.DecimalException, ValueError):
        return False      # not a number at all: ansible-core refuses it cleanly
    if number.is_nan():
        return False
    return number.is_infinite() or number.adjusted() >= INT_OPTION_DIGITS


def new_module(argument_spec, module_class=None, **kwargs):
    """AnsibleModule(argument_spec=argument_spec, **kwargs), but an int option given an infinity or a
    number of more than INT_OPTION_DIGITS digits fails naming the option instead of a traceback
    (ansible-core raises OverflowError for 'inf') or a conversion that never ends."""
    module_class = module_class or basic.AnsibleModule
    params = basic._load_params()
    if not isinstance(params, dict):
        params = {}     # nothing to check (e.g. ansible-test's argument-spec introspection)
    bad = sorted(name for name, option in argument_spec.items()
                 if option.get('type') == 'int' and _beyond_int(params.get(name)))
    if not bad:
        return module_class(argument_spec=argument_spec, **kwargs)
    spec = dict(argument_spec)
    for name in bad:
        spec[name] = dict(spec[name], type='raw')
    module = module_class(argument_spec=spec, **kwargs)
    module.fail_json(msg='; '.join(
        'Invalid value %r for %s: expected an integer (infinities and numbers of %d digits or more are '
        'beyond every range it has)' % (params.get(name), name, INT_OPTION_DIGITS + 1) for name in bad),
        option=bad[0])
