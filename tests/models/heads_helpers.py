"""Shared by the head tests: the trunk width, a one-thread fixture, a small training loop."""

from __future__ import annotations

import math

import pytest
import torch

D = 16  # trunk width of the random TrunkOutputs


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread avoids OpenMP hand-offs that dominate (and crawl on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train(head, trunk, actions_fn, mask, steps: int, lr: float) -> None:
    """Adam with cosine decay on a fixed trunk output (the heads' own parameters only)."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    for _ in range(steps):
        loss, _ = head.loss(trunk, actions_fn(), mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
