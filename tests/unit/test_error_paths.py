"""Errors that reach clients carry no server path (mediacache.media.transcode.without_paths)."""

from __future__ import annotations

import pytest
from PIL import Image

from mediacache.media import transcode
from mediacache.media.transcode import without_paths

IN = "/tmp/mediacache-in-abc123"
OUT = "/tmp/mediacache-variant-x9/variant.ogg"
NAMES = {IN: "voice.ogg", OUT: "the converted file"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"not a readable audio file: [Errno 1094995529] Invalid data found when "
            f"processing input: '{IN}'",
            "not a readable audio file: [Errno 1094995529] Invalid data found when "
            "processing input: 'voice.ogg'",
        ),
        (f"cannot identify image file '{IN}'", "cannot identify image file 'voice.ogg'"),
        (f"could not write {OUT}", "could not write the converted file"),
        # a path nobody told us about, e.g. the last line of a crash
        (
            'File "/srv/app/.venv/lib/python3.11/site-packages/av/x.py", line 3',
            'File "a server file", line 3',
        ),
        ("/var/tmp/other.ogg: bad", "a server file: bad"),
        # not paths: types, ratios, URLs
        ("audio/ogg; codecs=opus at 1/2 speed", "audio/ogg; codecs=opus at 1/2 speed"),
        ("see https://ffmpeg.org/a/b", "see https://ffmpeg.org/a/b"),
    ],
)
def test_paths_are_replaced(text, expected):
    assert without_paths(text, NAMES) == expected


def test_a_longer_known_path_wins_over_its_prefix():
    names = {"/tmp/a": "one", "/tmp/a.upload.ogg": "two"}
    assert without_paths("'/tmp/a.upload.ogg' and '/tmp/a'", names) == "'two' and 'one'"


def test_child_errors_and_crashes_come_back_without_paths(tmp_path, monkeypatch):
    """Through a real child process: its JSON error and its crash output."""
    broken = tmp_path / "in.bin"
    broken.write_bytes(b"OggS" + b"\0" * 100)
    monkeypatch.setattr(transcode, "media_settings", lambda: _Settings())
    with pytest.raises(transcode.TranscodeError) as failed:
        transcode.probe(str(broken), name="upload.ogg")
    assert "upload.ogg" in failed.value.reason
    assert str(tmp_path) not in failed.value.reason
    # An output folder that does not exist: the child dies with a traceback whose
    # last line names that path, which the caller did not list.
    picture = tmp_path / "in.png"
    Image.new("RGB", (4, 4)).save(picture)
    missing = tmp_path / "gone" / "out.jpg"
    with pytest.raises(transcode.TranscodeError) as crashed:
        transcode.run_child(
            ["image", str(picture), str(missing), "100000", "64"], 30, {str(picture): "a.png"}
        )
    assert crashed.value.reason.startswith("converter crashed (exit 1): "), crashed.value.reason
    assert "a server file" in crashed.value.reason
    assert str(tmp_path) not in crashed.value.reason


class _Settings:
    TRANSCODE_NICE = 0
    TRANSCODE_TIMEOUT = 30.0
    TRANSCODE_WORKERS = 1
    TRANSCODE_MAX_MEMORY = 2**30
