"""Train a small character-level GPT on the corpus shipped beside this file.

Alone:          python examples/train_gpt/train.py --steps 300 --checkpoint-dir /tmp/ckpt
Data parallel:  python -m torch.distributed.run --standalone --nproc_per_node=2 \\
                    examples/train_gpt/train.py --steps 300 --checkpoint-dir /tmp/ckpt

Uses CUDA when present (NCCL under torchrun), otherwise the CPU (gloo under torchrun). Output is
one ``key=value`` line per event, flushed at once, so logs can be followed and parsed:

    start step=0 world_size=1 device=cpu params=... vocab=64 resumed=false
    step=25 loss=2.9012 lr=0.003000 tokens/s=41234
    eval step=100 val_loss=2.4100
    checkpoint step=100 path=/tmp/ckpt/ckpt.pt
    done step=300 loss=1.9876 val_loss=1.9500 elapsed_s=41.2

Resume: with ``--checkpoint-dir``, the latest checkpoint (model, optimizer, step, RNG state)
is loaded automatically, so a killed or preempted run continues its loss curve. Every batch is
drawn from a generator seeded by (seed, step, rank), so a resumed run sees exactly the batches
the uninterrupted run would have seen and reaches the same loss at the same step. SIGTERM (a
cancel or time limit) saves a checkpoint after the current step and exits with status 143.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from model import GPT, GPTConfig
from torch.nn.parallel import DistributedDataParallel

HERE = Path(__file__).resolve().parent
CHECKPOINT = "ckpt.pt"
EXIT_STOPPED = 1  # --stop-after: behave like a crashed run
EXIT_TERMINATED = 128 + signal.SIGTERM


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300, help="optimizer steps in total")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per step per process")
    p.add_argument("--block-size", type=int, default=64, help="context length in characters")
    p.add_argument("--n-layer", type=int, default=3)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=20, help="linear warm-up steps")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-every", type=int, default=100, help="0: evaluate at the end only")
    p.add_argument("--eval-batches", type=int, default=8)
    p.add_argument("--checkpoint-dir", type=Path, default=None)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--stop-after", type=int, default=None, help="exit after this step, no save")
    p.add_argument("--data", type=Path, default=HERE / "data" / "corpus.txt")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument("--sample-chars", type=int, default=120, help="characters sampled at the end")
    return p.parse_args(argv)


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device_arg: str) -> Dist:
    """Join the process group when started by torchrun; pick the device."""
    auto_cuda = torch.cuda.is_available() and device_arg in ("auto", "cuda")
    cuda = auto_cuda or device_arg.startswith("cuda:")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device_arg.startswith("cuda:"):
        device = torch.device(device_arg)
    else:
        device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if world > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=rank, world=world, device=device)


def log(d: Dist, line: str) -> None:
    if d.main:
        print(line, flush=True)


class Corpus:
    """Characters of the corpus as ids; the first 90% trains, the rest validates."""

    def __init__(self, path: Path) -> None:
        text = path.read_text(encoding="utf-8")
        self.chars = "".join(sorted(set(text)))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        ids = torch.tensor([self.stoi[c] for c in text], dtype=torch.long)
        cut = int(0.9 * len(ids))
        self.train, self.val = ids[:cut], ids[cut:]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)


def get_batch(
    data: torch.Tensor, seed: int, batch: int, block: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    # A generator per batch: the batch depends on nothing but its seed, which makes resume exact.
    gen = torch.Generator().manual_seed(seed)
    ix = torch.randint(len(data) - block - 1, (batch,), generator=gen)
    x = torch.stack([data[i : i + block] for i in ix.tolist()])
    y = torch.stack([data[i + 1 : i + 1 + block] for i in ix.tolist()])
    return x.to(device), y.to(device)


def batch_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 10_007 + rank) % (2**63)


@torch.no_grad()
def evaluate(model: GPT, corpus: Corpus, args: argparse.Namespace, device: torch.device) -> float:
    """Mean validation loss over fixed batches (the same ones at every evaluation)."""
    model.eval()
    losses = []
    for i in range(args.eval_batches):
        x, y = get_batch(corpus.val, batch_seed(args.seed, -1 - i, 0), args.batch_size,
                         args.block_size, device)  # fmt: skip
        losses.append(float(model(x, y)[1]))  # type: ignore[arg-type]
    model.train()
    return sum(losses) / len(losses)


def lr_at(step: int, args: argparse.Namespace) -> float:
    # Warm-up then constant: the rate depends on the step alone, so --steps can grow on resume.
    return args.lr * min(1.0, step / max(1, args.warmup))


def save_checkpoint(
    directory: Path, model: GPT, opt: torch.optim.Optimizer, step: int, corpus: Corpus
) -> Path:
    """Write the checkpoint atomically: a crash mid-write leaves the previous one intact."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "config": model.cfg.as_dict(),
        "vocab": corpus.chars,
        "torch_rng": torch.get_rng_state(),
    }
    path = directory / CHECKPOINT
    tmp = directory / f".{CHECKPOINT}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(
    directory: Path | None, model: GPT, opt: torch.optim.Optimizer, corpus: Corpus
) -> int:
    """Restore the latest checkpoint if there is one; returns the step it reached (or 0)."""
    path = directory / CHECKPOINT if directory is not None else None
    if path is None or not path.exists():
        return 0
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    if state["config"] != model.cfg.as_dict() or state["vocab"] != corpus.chars:
        raise SystemExit(f"{path} was written for another model or corpus; refusing to resume")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


class Preempted:
    """SIGTERM arrived: finish the step, checkpoint, exit."""

    flag = False

    @classmethod
    def handler(cls, signum: int, frame: object) -> None:
        cls.flag = True


def agreed(d: Dist, local: bool) -> bool:
    """True on every rank if it is true on any, so all ranks stop at the same step."""
    if d.world == 1:
        return local
    t = torch.tensor([1.0 if local else 0.0], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_over_ranks(d: Dist, value: float) -> float:
    if d.world == 1:
        return value
    t = torch.tensor([value], device=d.device)
    dist.all_reduce(t)
    return float(t.item()) / d.world


def build(args: argparse.Namespace, corpus: Corpus, d: Dist) -> tuple[GPT, torch.optim.Optimizer]:
    torch.manual_seed(args.seed)  # same initial weights on every rank and every run
    cfg = GPTConfig(
        vocab_size=len(corpus.chars),
        block_size=args.block_size,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
        dropout=args.dropout,
    )
    model = GPT(cfg).to(d.device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01)
    return model, opt


def train_step(
    args: argparse.Namespace,
    d: Dist,
    corpus: Corpus,
    parts: tuple[torch.nn.Module, GPT, torch.optim.Optimizer],
    step: int,
) -> float:
    """One optimizer step on this rank's batch for ``step``; returns its loss."""
    net, model, opt = parts
    for group in opt.param_groups:
        group["lr"] = lr_at(step, args)
    seed = batch_seed(args.seed, step, d.rank)
    x, y = get_batch(corpus.train, seed, args.batch_size, args.block_size, d.device)
    _, loss = net(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return float(loss.detach())


class Meter:
    """Tokens per second between two log lines."""

    def __init__(self, tokens_per_step: int) -> None:
        self.tokens_per_step = tokens_per_step
        self.mark, self.last_step = time.monotonic(), 0

    def rate(self, step: int) -> float:
        now = time.monotonic()
        rate = (step - self.last_step) * self.tokens_per_step / max(now - self.mark, 1e-9)
        self.mark, self.last_step = now, step
        return rate


def checkpoint_due(args: argparse.Namespace, d: Dist, step: int, preempted: bool) -> bool:
    if args.checkpoint_dir is None or not d.main:
        return False
    return step % args.checkpoint_every == 0 or step == args.steps or preempted


def train(args: argparse.Namespace, d: Dist) -> int:
    corpus = Corpus(args.data)
    model, opt = build(args, corpus, d)
    step = load_checkpoint(args.checkpoint_dir, model, opt, corpus)
    net: torch.nn.Module = DistributedDataParallel(model) if d.world > 1 else model
    resumed = str(step > 0).lower()
    log(d, f"start step={step} world_size={d.world} device={d.device} "
           f"params={model.num_params()} vocab={len(corpus.chars)} resumed={resumed}")  # fmt: skip
    started, loss = time.monotonic(), float("nan")
    meter = Meter(args.batch_size * args.block_size * d.world)
    meter.last_step = step
    while step < args.steps:
        step += 1
        loss = train_step(args, d, corpus, (net, model, opt), step)
        if step % args.log_every == 0 or step == 1:
            mean, rate = mean_over_ranks(d, loss), meter.rate(step)
            log(d, f"step={step} loss={mean:.4f} lr={lr_at(step, args):.6f} tokens/s={rate:.0f}")
        if d.main and args.eval_every and step % args.eval_every == 0 and step < args.steps:
            log(d, f"eval step={step} val_loss={evaluate(model, corpus, args, d.device):.4f}")
        preempted = agreed(d, Preempted.flag)
        if checkpoint_due(args, d, step, preempted):
            path = save_checkpoint(args.checkpoint_dir, model, opt, step, corpus)
            log(d, f"checkpoint step={step} path={path}")
        if preempted:
            log(d, f"preempted step={step} (SIGTERM; resume from the checkpoint)")
            return EXIT_TERMINATED
        if args.stop_after is not None and step >= args.stop_after:
            log(d, f"stopped step={step} (--stop-after: exiting as if killed)")
            return EXIT_STOPPED
    loss = mean_over_ranks(d, loss)
    finish(args, d, model, corpus, step, loss, time.monotonic() - started)
    return 0


def finish(
    args: argparse.Namespace,
    d: Dist,
    model: GPT,
    corpus: Corpus,
    step: int,
    loss: float,
    elapsed: float,
) -> None:
    if not d.main:
        return
    val = evaluate(model, corpus, args, d.device)
    log(d, f"done step={step} loss={loss:.4f} val_loss={val:.4f} elapsed_s={elapsed:.1f}")
    if args.sample_chars > 0:
        gen = torch.Generator(device=d.device).manual_seed(args.seed)
        start = torch.tensor([[corpus.stoi["\n"]]], device=d.device)
        ids = model.generate(start, args.sample_chars, gen)[0].tolist()
        log(d, "sample=" + json.dumps(corpus.decode(ids[1:])))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    signal.signal(signal.SIGTERM, Preempted.handler)
    d = setup(args.device)
    code = train(args, d)
    if d.world > 1:
        # Wait for rank 0's final evaluation: a rank leaving early makes torchrun kill the rest.
        dist.barrier()
        dist.destroy_process_group()
    return code


if __name__ == "__main__":
    sys.exit(main())
