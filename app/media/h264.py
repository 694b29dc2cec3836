"""Reading H.264 packets without decoding them: which pictures no other picture needs."""

from __future__ import annotations

from collections.abc import Iterable


def h264_length_size(extradata: bytes | None) -> int | None:
    """The NAL length-prefix size of AVCC H.264 (MP4, MKV); None for Annex B start codes."""
    if extradata and len(extradata) >= 7 and extradata[0] == 1:
        return (extradata[4] & 3) + 1
    return None


def _nal_headers(data: bytes, length_size: int | None) -> Iterable[int] | None:
    """The first byte of each NAL unit of one H.264 packet; None when it does not parse."""
    headers: list[int] = []
    if length_size is not None:
        pos = 0
        while pos < len(data):
            if pos + length_size > len(data):
                return None
            size = int.from_bytes(data[pos:pos + length_size], "big")
            pos += length_size
            if size == 0 or pos + size > len(data):
                return None
            headers.append(data[pos])
            pos += size
        return headers
    pos = data.find(b"\x00\x00\x01")
    while pos >= 0:
        if pos + 3 < len(data):
            headers.append(data[pos + 3])
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return headers


def h264_is_disposable(data: bytes, length_size: int | None) -> bool:
    """True when every picture slice of an H.264 packet has ``nal_ref_idc == 0``: no other
    picture predicts from it. Anything unusual (no slice, data partitions, SVC/MVC units, a
    packet that does not parse) counts as needed."""
    headers = _nal_headers(data, length_size)
    if not headers:
        return False
    slices = 0
    for header in headers:
        nal_type = header & 0x1F
        if nal_type in (2, 3, 4, 5, 14, 15, 20, 21) or header & 0x80:
            return False
        if nal_type == 1:
            if header & 0x60:
                return False
            slices += 1
    return slices > 0
