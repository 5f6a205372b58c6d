"""Data parallelism on CPU (gloo): N processes with batch B must take the step of one process with N*B."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from model.common.processes import DistInfo
from model.embedding.spec import EncoderConfig
from model.training.distributed import convert_batchnorm
from model.training.feed import CachedFeed
from model.training.loss import NTXentLoss, SupConLoss
from model.training.simclr import SimCLRModel
from model.training.train import train
from tests.conftest import tiny_config
from tests.multiproc import run_processes

WORLD = 2
N_GLOBAL = 8  # images in the global batch
TAUS = (0.1, 0.5)


def global_projections(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(N_GLOBAL, 6, generator=gen), torch.randn(N_GLOBAL, 6, generator=gen)
    labels = torch.tensor([0, 1, 2, 0, -1, 1, -1, 2])
    return z1, z2, labels


def losses() -> dict[str, torch.nn.Module]:
    out: dict[str, torch.nn.Module] = {}
    for tau in TAUS:
        out[f"ntxent-{tau}"], out[f"supcon-{tau}"] = NTXentLoss(tau), SupConLoss(tau)
    return out


def _loss_worker(rank: int, out: Path) -> None:
    dist.init_process_group("gloo")
    z1_all, z2_all, labels_all = global_projections()
    mine = slice(rank * N_GLOBAL // WORLD, (rank + 1) * N_GLOBAL // WORLD)
    results = {}
    for name, loss_fn in losses().items():
        z1, z2 = z1_all[mine].clone().requires_grad_(), z2_all[mine].clone().requires_grad_()
        args = (z1, z2, labels_all[mine]) if name.startswith("supcon") else (z1, z2)
        loss = loss_fn(*args)
        loss.backward()
        results[name] = (loss.detach(), z1.grad, z2.grad)
    torch.save(results, out / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_gathered_losses_and_gradients_match_one_process_with_the_global_batch(tmp_path: Path) -> None:
    run_processes(WORLD, _loss_worker, tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    z1_all, z2_all, labels_all = global_projections()
    for name, loss_fn in losses().items():
        z1, z2 = z1_all.clone().requires_grad_(), z2_all.clone().requires_grad_()
        loss = loss_fn(z1, z2, labels_all) if name.startswith("supcon") else loss_fn(z1, z2)
        loss.backward()
        assert z1.grad is not None and z2.grad is not None
        # The global loss is the mean of the processes' losses (each averages its own anchors) ...
        mean = sum(float(r[name][0]) for r in ranks) / WORLD
        assert mean == pytest.approx(loss.item(), rel=1e-5), name
        # ... and DDP averages gradients, so each process's gradient / WORLD is the one-process one.
        for rank, r in enumerate(ranks):
            mine = slice(rank * N_GLOBAL // WORLD, (rank + 1) * N_GLOBAL // WORLD)
            torch.testing.assert_close(r[name][1] / WORLD, z1.grad[mine], rtol=1e-5, atol=1e-7, msg=name)
            torch.testing.assert_close(r[name][2] / WORLD, z2.grad[mine], rtol=1e-5, atol=1e-7, msg=name)


def tiny_model() -> SimCLRModel:
    torch.manual_seed(0)
    return SimCLRModel(EncoderConfig(arch="small_cnn", width=4, proj_hidden=16, proj_out=8, image_size=16))


def global_views() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(N_GLOBAL, 3, 16, 16, generator=gen), torch.randn(N_GLOBAL, 3, 16, 16, generator=gen)


def _model_worker(rank: int, out: Path) -> None:
    dist.init_process_group("gloo")
    model = tiny_model()
    convert_batchnorm(model, torch.device("cpu"))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    v1, v2 = global_views()
    mine = slice(rank * N_GLOBAL // WORLD, (rank + 1) * N_GLOBAL // WORLD)
    _, z = ddp(torch.cat([v1[mine], v2[mine]]))
    loss = NTXentLoss(0.5)(*z.chunk(2))
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    torch.save({"loss": loss.detach(), "grads": grads, "buffers": dict(model.named_buffers())}, out / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_ddp_with_global_batchnorm_takes_the_one_process_step(tmp_path: Path) -> None:
    run_processes(WORLD, _model_worker, tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    model = tiny_model()
    v1, v2 = global_views()
    _, z = model(torch.cat([v1, v2]))
    loss = NTXentLoss(0.5)(*z.chunk(2))
    loss.backward()
    assert sum(float(r["loss"]) for r in ranks) / WORLD == pytest.approx(loss.item(), rel=1e-5)
    for name, p in model.named_parameters():
        for r in ranks:  # DDP leaves the averaged gradient on every process
            torch.testing.assert_close(r["grads"][name], p.grad, rtol=1e-4, atol=2e-5, msg=name)
    for name, buf in model.named_buffers():  # running statistics of the global batch
        for r in ranks:
            torch.testing.assert_close(r["buffers"][name].to(buf.dtype), buf, rtol=1e-4, atol=2e-5, msg=name)


def test_feed_shards_each_global_batch_across_processes() -> None:
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 3, 2, 2).contiguous()
    labels = torch.arange(40)
    one = CachedFeed(images, labels, batch_size=8, seed=3)
    parts = [CachedFeed(images, labels, batch_size=4, seed=3, dist=DistInfo(r, 2)) for r in range(2)]
    assert one.steps_per_epoch == parts[0].steps_per_epoch == 5
    for epoch in (0, 1):
        for (_, whole), (_, a), (_, b) in zip(
            one.epoch(epoch), parts[0].epoch(epoch), parts[1].epoch(epoch), strict=True
        ):
            assert torch.equal(torch.cat([a, b]), whole)


def _train_worker(rank: int, data: str, out: Path, stop_at_step: int | None, resume: bool) -> None:
    cfg = tiny_config(epochs=2, batch_size=4, knn_every=1)
    train(cfg, data, out, resume=resume, progress=False, stop_at_step=stop_at_step)


@pytest.mark.slow
def test_two_process_training_checkpoints_and_resumes_exactly(image_folder: Path, tmp_path: Path) -> None:
    data = str(image_folder)
    run_processes(WORLD, _train_worker, data, tmp_path / "full", None, False)
    run_processes(WORLD, _train_worker, data, tmp_path / "part", 6, False)
    stopped = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    assert stopped["step"] == 6 and stopped["world_size"] == WORLD and len(stopped["aug_rng_ranks"]) == WORLD
    run_processes(WORLD, _train_worker, data, tmp_path / "part", None, True)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 2 * (36 // (4 * WORLD))
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=key)
    # Rank 0 alone wrote the log: each step once, in order, with the global batch's throughput.
    rows = [json.loads(line) for line in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["kind"] == "step"]
    assert steps == list(range(1, a["step"] + 1))
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2]
    assert (tmp_path / "part" / "encoder.pt").exists()
    # One process cannot continue a two-process run: the batches and schedule would change.
    with pytest.raises(ValueError, match="--nproc-per-node 2"):
        train(tiny_config(epochs=3), data, tmp_path / "part", resume=True, progress=False)


def test_streamed_shares_take_the_same_number_of_steps(image_folder: Path, tmp_path: Path) -> None:
    import shutil

    from model.collections.data import iter_records
    from model.training.feed import StreamFeed

    data = tmp_path / "data"
    shutil.copytree(image_folder, data)
    uris = [r.uri for r in iter_records(data)]
    for uri in uris[0:8:2]:  # four unreadable files, all in rank 0's share (even positions)
        (data / uri).write_bytes(b"broken")
    feeds = [
        StreamFeed(str(data), 32, [], len(uris), batch_size=6, seed=0, workers=0, dist=DistInfo(r, 2)) for r in range(2)
    ]
    assert feeds[0].steps_per_epoch == len(uris) // 12 == 4
    for feed in feeds:
        # Rank 0's share has 27 - 4 = 23 readable images for 4 x 6: it starts over rather than stop short.
        batches = [images for images, _ in feed.epoch(0)]
        assert len(batches) == 4 and all(b.shape == (6, 3, 32, 32) for b in batches)
        resumed = [images for images, _ in feed.epoch(0, start=3)]
        assert len(resumed) == 1 and torch.equal(resumed[0], batches[3])


def _timing_worker(rank: int, out: Path) -> None:
    from model.training.distributed import slowest_process

    dist.init_process_group("gloo")
    mine = {"fp32": 1.0 + rank, "bf16": float("inf") if rank == 1 else 0.5, 24: 0.2 * (2 - rank)}
    torch.save(slowest_process(mine, torch.device("cpu")), out / f"rank{rank}.pt")
    dist.destroy_process_group()


def test_timed_choices_agree_across_processes(tmp_path: Path) -> None:
    """Each process times its own trials; all must then choose alike (precision, step plan)."""
    run_processes(2, _timing_worker, tmp_path)
    agreed = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert agreed[0] == agreed[1] == {"fp32": 2.0, "bf16": float("inf"), 24: pytest.approx(0.4)}


def _uneven_trials_worker(rank: int, out: Path) -> None:
    from datetime import timedelta

    from model.training.simclr import SimCLRModel
    from model.training.trial import TrialSteps
    from tests.conftest import tiny_config

    # A short timeout: a trial step that waited for the other process would fail, not hang.
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    cfg = tiny_config()
    trials = TrialSteps(SimCLRModel(cfg.encoder), cfg, torch.device("cpu"), images=4)
    for _ in range(1 + 2 * rank):  # rank 0 one step, rank 1 three: as when a candidate is cut on one
        trials.run(16, bf16=False, channels_last=False)
    dist.barrier()
    (out / f"done{rank}").write_text("ok")
    dist.destroy_process_group()


def test_trial_steps_need_no_other_process(tmp_path: Path) -> None:
    """Processes may run different numbers of timed trial steps; none may wait for another."""
    run_processes(2, _uneven_trials_worker, tmp_path)
    assert (tmp_path / "done0").exists() and (tmp_path / "done1").exists()
