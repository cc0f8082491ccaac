# -*- coding: utf-8 -*-
# Copyright: (c) 2026, samepage.ksm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The tuner's unit is Type=notify: the daemon reports ready (sd_notify READY=1) only once its configuration
is loaded, so that a bad file fails `systemctl start` through the main process's exit status 78, which
RestartPreventExitStatus= sees (an ExecStartPre= check would be restarted up to the start limit)."""

import socket

from ansible_collections.samepage.ksm.plugins.module_utils import _ksm_tuner


def test_ready_is_sent_to_the_socket_systemd_names(tmp_path):
    path = str(tmp_path / 'notify')
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    try:
        assert _ksm_tuner.notify_systemd('READY=1', environ={'NOTIFY_SOCKET': path}) is True
        assert server.recv(4096) == b'READY=1'
    finally:
        server.close()


def test_no_socket_no_message():
    assert _ksm_tuner.notify_systemd('READY=1', environ={}) is False
    assert _ksm_tuner.notify_systemd('READY=1', environ={'NOTIFY_SOCKET': 'relative'}) is False


def test_a_socket_that_is_gone_is_not_an_error(tmp_path):
    assert _ksm_tuner.notify_systemd('READY=1', environ={'NOTIFY_SOCKET': str(tmp_path / 'gone')}) is False


def test_the_unit_waits_for_ready_and_checks_no_configuration_before_start():
    unit = _ksm_tuner.render_unit('/usr/bin/python3')
    assert 'Type=notify\n' in unit and 'NotifyAccess=main\n' in unit
    assert 'ExecStartPre' not in unit
    assert 'RestartPreventExitStatus=78\n' in unit and 'Restart=on-failure\n' in unit
