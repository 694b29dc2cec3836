"""The media layer: probing uploads, reading frames by index, subtitles and speech.

Every ffmpeg/ffprobe run goes through ``app.media.ffmpeg`` (timeouts, bounded output,
local files only); errors are ``MediaError`` with stable codes.
"""
