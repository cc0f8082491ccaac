# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The four-step idiom every module test uses: check mode (changed, nothing done), apply (changed),
apply again (unchanged), check mode again (unchanged). One helper for the unit, system and lab suites.

    # the module runs here: unit tests (run_main), system tests (the real `ansible`)
    checked, applied, again, checked_again = four_steps(
        lambda check: run_main(ksm_sysfs.main, args, check_mode=check), observe=lambda: list(kernel.writes))

    # the four results come from elsewhere: the lab runs the steps as the four tasks of one playbook
    assert_four_steps(results, describe=brief)

observe() returns what check mode and the unchanged steps must leave as it is (the fake kernel's writes,
the real knobs, the mutating systemctl calls); it is compared before and after those steps.
"""

# (name, check mode, changed expected)
FOUR_STEPS = (('check mode', True, True), ('apply', False, True), ('apply again', False, False),
              ('check mode again', True, False))


def check_step(step, result, changed, describe=repr):
    """One step's result: not failed, and changed as the idiom expects."""
    assert not result.get('failed'), '%s failed: %s' % (step, describe(result))
    assert result.get('changed') is changed, '%s: changed=%r, expected %r: %s' % (
        step, result.get('changed'), changed, describe(result))


def assert_four_steps(results, describe=repr):
    """The idiom's assertions on four results produced elsewhere, in order."""
    for (step, dummy, changed), result in zip(FOUR_STEPS, results):
        check_step(step, result, changed, describe)
    assert len(results) == len(FOUR_STEPS), 'expected four results, got %d: %s' % (
        len(results), [describe(result) for result in results])
    return results


def four_steps(run, observe=None, describe=repr):
    """Run the four steps with run(check_mode) -> result dict; return the four results.

    observe(), when given, must return the same before and after check mode, and the same after the
    apply step as after the two unchanged steps that follow it.
    """
    results = []
    seen = observe() if observe else None
    for step, check, changed in FOUR_STEPS:
        result = run(check)
        check_step(step, result, changed, describe)
        if observe is not None:
            now = observe()
            if step == 'apply':
                seen = now
            else:
                assert now == seen, '%s changed what it must leave alone: %r -> %r' % (step, seen, now)
        results.append(result)
    return results
