"""The pure parts of the in-process decoder: which H.264 packets may be left undecoded,
and how presentation times name frame indices."""

from __future__ import annotations

import numpy as np
import pytest

from app.media.clock import FrameClock, InProcessUnusable
from app.media.h264 import h264_is_disposable, h264_length_size

# NAL header bytes: forbidden bit, nal_ref_idc (2 bits), nal_unit_type (5 bits).
IDR = 0x65  # ref_idc 3, type 5
P_SLICE = 0x41  # ref_idc 2, type 1
B_REF = 0x21  # ref_idc 1, type 1 (a B-frame other frames predict from: b-pyramid)
B_DISPOSABLE = 0x01  # ref_idc 0, type 1
SEI = 0x06
AUD = 0x09


def avcc(*nals: bytes, length_size: int = 4) -> bytes:
    return b"".join(len(n).to_bytes(length_size, "big") + n for n in nals)


def annexb(*nals: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


def nal(header: int, size: int = 12) -> bytes:
    return bytes([header]) + bytes(range(1, size))


def test_length_size_comes_from_the_avcc_record() -> None:
    record = bytes([1, 0x4D, 0x40, 0x1F, 0xFF, 0xE1, 0x00])
    assert h264_length_size(record) == 4
    assert h264_length_size(bytes([1, 0x4D, 0x40, 0x1F, 0xFD, 0xE1, 0x00])) == 2
    assert h264_length_size(b"\x00\x00\x00\x01\x67") is None  # Annex B extradata
    assert h264_length_size(None) is None


@pytest.mark.parametrize("length_size", [4, 2, 1])
def test_only_pictures_no_one_predicts_from_are_disposable(length_size: int) -> None:
    def packet(*headers: int) -> bytes:
        return avcc(*(nal(h) for h in headers), length_size=length_size)

    assert h264_is_disposable(packet(B_DISPOSABLE), length_size)
    assert h264_is_disposable(packet(AUD, SEI, B_DISPOSABLE, B_DISPOSABLE), length_size)
    assert not h264_is_disposable(packet(P_SLICE), length_size)
    assert not h264_is_disposable(packet(B_REF), length_size)
    assert not h264_is_disposable(packet(IDR), length_size)
    # One referenced slice makes the whole picture a reference.
    assert not h264_is_disposable(packet(B_DISPOSABLE, B_REF), length_size)
    # No picture at all, data partitions, MVC/SVC units: sent to the decoder to be safe.
    assert not h264_is_disposable(packet(SEI), length_size)
    assert not h264_is_disposable(packet(0x02), length_size)
    assert not h264_is_disposable(packet(B_DISPOSABLE, 0x14), length_size)


def test_annex_b_packets_are_parsed_by_start_codes() -> None:
    assert h264_is_disposable(annexb(nal(AUD), nal(B_DISPOSABLE)), None)
    assert not h264_is_disposable(annexb(nal(AUD), nal(P_SLICE)), None)
    three_byte = b"\x00\x00\x01" + nal(B_DISPOSABLE) + b"\x00\x00\x01" + nal(B_REF)
    assert not h264_is_disposable(three_byte, None)


def test_packets_that_do_not_parse_are_needed() -> None:
    whole = avcc(nal(B_DISPOSABLE))
    assert not h264_is_disposable(whole[:-3], 4)  # length runs past the end
    assert not h264_is_disposable(b"", 4)
    assert not h264_is_disposable(b"\x00\x00\x00\x00" + whole, 4)  # zero-length unit
    assert not h264_is_disposable(avcc(bytes([0x81, 1, 2])), 4)  # forbidden bit set


def test_constant_rate_clock_rounds_to_the_grid_and_refuses_times_between() -> None:
    clock = FrameClock(start_s=7.3, fps=25.0, num_frames=100)
    assert clock.frames_at(7.3) == range(0, 1)
    assert clock.frames_at(7.3 + 10 / 25 + 0.01) == range(10, 11)  # a quarter frame late
    assert clock.frames_at(7.3 - 1 / 25) is None  # before the first counted frame
    assert clock.frames_at(7.3 + 100 / 25) is None  # past the last one
    with pytest.raises(InProcessUnusable):
        clock.frames_at(7.3 + 10.5 / 25)  # half-way: no index can be named
    assert clock.seek_time(10) == pytest.approx(7.3 + 9.5 / 25)


def test_table_clock_names_frames_sharing_a_timestamp_together() -> None:
    stamps = np.array([0.0, 0.04, 0.08, 0.08, 0.6, 0.7])
    clock = FrameClock(start_s=0.0, fps=10.0, num_frames=6, stamps=stamps)
    assert clock.frames_at(0.04) == range(1, 2)
    assert clock.frames_at(0.0800004) == range(2, 4)  # ffprobe rounds to the microsecond
    assert clock.frames_at(-0.5) is None and clock.frames_at(5.0) is None
    with pytest.raises(InProcessUnusable):
        clock.frames_at(0.3)  # a frame the table never listed
    assert clock.seek_time(4) == pytest.approx(0.34)
    assert clock.seek_time(3) == pytest.approx(0.08 - 0.05)  # equal stamps: half a frame
