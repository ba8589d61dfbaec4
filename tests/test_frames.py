import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from smilebot_tools.frames import VideoError, extract_frames  # noqa: E402


def write_video(path, frames=7):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(frames):
        writer.write(np.full((24, 32, 3), 30 * i, np.uint8))
    writer.release()


def test_every_nth_frame_once(tmp_path):
    video = tmp_path / "clip.avi"
    write_video(video)
    paths = extract_frames(video, tmp_path / "frames", every=3)
    assert [p.name for p in paths] == ["frame_000000.jpg", "frame_000003.jpg", "frame_000006.jpg"]
    assert abs(float(cv2.imread(str(paths[1])).mean()) - 90) < 3  # frame 3 was grey 90
    stamp = paths[0].stat().st_mtime_ns
    assert extract_frames(video, tmp_path / "frames", every=3) == paths
    assert paths[0].stat().st_mtime_ns == stamp  # kept, not re-encoded


def test_unreadable_video_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(VideoError, match=r"bad\.mp4"):
        extract_frames(bad, tmp_path / "frames")
