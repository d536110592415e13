"""Ctrl-C and SIGTERM handling of the training loop."""

from __future__ import annotations

import signal

import pytest

from nextworld.train.interrupt import StopSignals


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_requests_a_stop(sig):
    with StopSignals() as stop:
        assert not stop.requested
        signal.raise_signal(sig)
        assert stop.requested
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_second_ctrl_c_aborts_unless_a_launcher_forwards_it():
    with StopSignals() as stop:
        signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    with StopSignals(second_sigint_aborts=False) as stop:
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)  # torchrun's copy of the same Ctrl-C
        assert stop.requested
