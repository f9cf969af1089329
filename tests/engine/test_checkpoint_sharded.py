"""brisk.engine.checkpoint's sharded (FSDP) folders, driven directly on a real one-rank gloo
group with plain tensors: what save_sharded leaves on disk (stale temporaries of a crashed
save included), what check_sharded calls complete, and every refusal of load_sharded, each
message in full. The end-to-end FSDP fit/resume is in test_distributed_paths.py."""

import os

import pytest
import torch

from brisk.engine.checkpoint import check_sharded, load_sharded, save_sharded


@pytest.fixture
def group(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def payload(**model):
    return {"model": {k: torch.tensor(v) for k, v in model.items()},
            "optim": {"m": torch.tensor([0.5, 1.5])}}


def raises(exc, fn, *args, **kw):
    with pytest.raises(exc) as e:
        fn(*args, **kw)
    return str(e.value)


def test_save_writes_a_complete_folder_and_clears_a_crashed_saves_leftovers(group, tmp_path):
    ckpt = str(tmp_path / "ckpt")
    # a save that crashed once left its temporary folder and a previous one's old copy
    os.makedirs(ckpt + ".brisk-tmp")
    open(os.path.join(ckpt + ".brisk-tmp", "junk"), "w").close()
    os.makedirs(ckpt + ".brisk-old")
    open(os.path.join(ckpt + ".brisk-old", "junk"), "w").close()
    save_sharded(ckpt, payload(w=[1.0, 2.0]), {"epoch": 3})
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "store"]
    assert sorted(os.listdir(ckpt)) == [".metadata", "__0_0.distcp", "trainer.pt"]
    save_sharded(ckpt, payload(w=[4.0, 5.0]), {"epoch": 4})  # over the previous one
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "store"]
    live = payload(w=[0.0, 0.0])
    assert load_sharded(ckpt, live) == {"epoch": 4}  # map_location defaults to the CPU
    assert torch.equal(live["model"]["w"], torch.tensor([4.0, 5.0]))


def test_save_refuses_a_path_that_is_a_file(group, tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"keep me")
    assert raises(ValueError, save_sharded, path, payload(w=[1.0]), {}) == (
        f"checkpoint {str(path)!r}: a sharded checkpoint is a folder, and this is a file")
    assert path.read_bytes() == b"keep me"


def test_check_sharded_wants_a_folder_with_metadata_and_trainer_state(tmp_path):
    missing = str(tmp_path / "none")
    assert raises(FileNotFoundError, check_sharded, missing) == (
        f"checkpoint: no such folder {missing!r}")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    incomplete = (f"checkpoint {str(folder)!r}: is a folder, not a checkpoint (a sharded "
                  "checkpoint is a folder with .metadata and trainer.pt, written by "
                  "save_checkpoint under strategy='fsdp')")
    (folder / "trainer.pt").write_bytes(b"x")
    assert raises(ValueError, check_sharded, folder) == incomplete  # no .metadata
    (folder / "trainer.pt").unlink()
    (folder / ".metadata").write_bytes(b"x")
    assert raises(ValueError, check_sharded, folder) == incomplete  # no trainer.pt
    (folder / "trainer.pt").write_bytes(b"x")
    check_sharded(folder)  # both: complete
    a_file = tmp_path / "f"
    a_file.write_bytes(b"x")
    assert raises(ValueError, check_sharded, a_file).startswith(
        f"checkpoint {str(a_file)!r}: is a folder, not a checkpoint")


def test_load_checks_the_rest_and_the_weights_before_writing_any(group, tmp_path):
    ckpt = str(tmp_path / "ckpt")
    saved = payload(w=[1.0, 2.0], b=[3.0])
    saved["model"]["note"] = "not a tensor"
    save_sharded(ckpt, saved, {"epoch": 7})

    def refuse(rest):
        raise ValueError(f"rest {rest['epoch']} does not fit")

    live = payload(w=[0.0, 0.0], b=[0.0])
    live["model"]["note"] = ""
    assert raises(ValueError, load_sharded, ckpt, live, check=refuse) == "rest 7 does not fit"
    assert torch.equal(live["model"]["w"], torch.zeros(2))  # nothing written
    seen = []
    assert load_sharded(ckpt, live, check=seen.append) == {"epoch": 7}
    assert seen == [{"epoch": 7}]
    assert torch.equal(live["model"]["b"], torch.tensor([3.0]))
    assert torch.equal(live["optim"]["m"], torch.tensor([0.5, 1.5]))


def test_load_names_missing_extra_and_reshaped_weights(group, tmp_path):
    ckpt = str(tmp_path / "ckpt")
    save_sharded(ckpt, payload(a=[1.0], b=[2.0], c=[3.0]), {})
    more = payload(a=[0.0], b=[0.0], c=[0.0], d=[0.0], e=[0.0], f=[0.0], g=[0.0])
    assert raises(ValueError, load_sharded, ckpt, more) == (
        f"checkpoint {ckpt!r}: does not fit this model (not in it: ['model.d', 'model.e', "
        "'model.f']; not in this model: [])")
    fewer = payload(a=[0.0])
    assert raises(ValueError, load_sharded, ckpt, fewer) == (
        f"checkpoint {ckpt!r}: does not fit this model (not in it: []; not in this model: "
        "['model.b', 'model.c'])")
    wide = payload(a=[0.0, 0.0], b=[0.0], c=[0.0])
    assert raises(ValueError, load_sharded, ckpt, wide) == (
        f"checkpoint {ckpt!r}: model.a is (1,), this model's (2,)")
    assert all(torch.equal(v, torch.zeros_like(v)) for v in wide["model"].values())

    big = str(tmp_path / "big")
    save_sharded(big, payload(a=[1.0], b=[2.0], c=[3.0], d=[4.0], e=[5.0]), {})
    assert raises(ValueError, load_sharded, big, payload(a=[0.0])) == (
        f"checkpoint {big!r}: does not fit this model (not in it: []; not in this model: "
        "['model.b', 'model.c', 'model.d'])")


def test_load_of_a_damaged_folder_names_it(group, tmp_path):
    ckpt = str(tmp_path / "ckpt")
    save_sharded(ckpt, payload(w=[1.0, 2.0]), {})
    os.remove(os.path.join(ckpt, "__0_0.distcp"))  # the tensors' data lost
    msg = raises(ValueError, load_sharded, ckpt, payload(w=[0.0, 0.0]))
    assert msg.startswith(f"checkpoint {ckpt!r}: could not be read (")
