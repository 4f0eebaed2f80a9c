"""Atomic writes leave files with the usual permissions, not the temp file's 0600."""
import os
import stat

from rsir_trt.atomic import NEW_FILE_MODE, write_text


def test_a_new_file_gets_the_umask_mode_and_a_replaced_one_keeps_its_own(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    assert NEW_FILE_MODE == 0o666 & ~mask
    new = tmp_path / "new.txt"
    write_text(new, "a\n")
    assert stat.S_IMODE(new.stat().st_mode) == NEW_FILE_MODE and new.read_text() == "a\n"
    old = tmp_path / "old.txt"
    old.write_text("x\n")
    old.chmod(0o640)
    write_text(old, "b\n")
    assert stat.S_IMODE(old.stat().st_mode) == 0o640 and old.read_text() == "b\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.txt", "old.txt"]   # no temp files left
