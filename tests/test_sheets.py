import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("pandas")

from smilebot_tools.sheets import GREEN, GREY, RED, Tile, contact_sheet, face_crop  # noqa: E402


def test_face_crop_is_centred_on_the_box_and_padded_at_edges():
    image = np.zeros((100, 200, 3), np.uint8)
    image[40:60, 90:110] = 255  # a white 20 x 20 "face"
    crop = face_crop(image, (90, 40, 110, 60), tile=60, grow=0.5)  # 40 x 40 window -> 60 px
    assert crop.shape == (60, 60, 3)
    assert crop[30, 30].tolist() == [255, 255, 255] and crop[2, 2].tolist() == [0, 0, 0]
    corner = face_crop(image, (0, 0, 20, 20), tile=40)  # runs off the image: black padding
    assert corner.shape == (40, 40, 3) and corner[0, 0].tolist() == [0, 0, 0]


def test_contact_sheet_grid_and_label_colours(tmp_path):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.full((50, 50, 3), 128, np.uint8))
    tiles = [Tile(path, (10, 10, 40, 40), smile, "x") for smile in (1, 0, None)]
    tiles.append(Tile(tmp_path / "missing.png", (0, 0, 5, 5), 1, "gone"))
    out = contact_sheet(tiles, tmp_path / "sheet.png", columns=3, tile=32)
    sheet = cv2.imread(str(out))
    assert sheet.shape == (2 * (32 + 14 + 6), 3 * (32 + 6), 3)
    frame_colours = [tuple(sheet[1, 1 + k * 38].tolist()) for k in range(3)]
    assert frame_colours == [GREEN, RED, GREY]
    assert sheet[52 + 3 + 16, 3 + 16].tolist() == [0, 0, 0]  # unreadable image: black tile
