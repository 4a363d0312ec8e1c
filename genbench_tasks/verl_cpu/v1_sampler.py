"""The v1 trainer's sync replay buffer, with batches in dispatch order (verl >= 0.9).

verl's ``ReplayBuffer`` materialises a batch in the order trajectories reached TransferQueue, i.e. rollout
completion order, which depends on timing: the same seed then trains on a permuted batch and the metrics
differ in the last bits. This subclass orders the batch by the order the prompts were dispatched (their order
in TransferQueue's listing), then session and turn. Plugged in with
``trainer.v1.sampler.custom_sampler.{path,name}``.
"""

from __future__ import annotations

from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer


def _split(key: str) -> tuple[str, int, int]:
    uid, _, rest = key.partition("_")
    session, _, index = rest.partition("_")
    return uid, int(session or 0), int(index or 0)


class DispatchOrderReplayBuffer(ReplayBuffer):
    """``ReplayBuffer`` whose batches list trajectories in prompt dispatch order."""

    def _materialize_batch(self, partition_id, selected_prompt_uids, partition_snapshot):
        dispatched = {uid: i for i, uid in enumerate(self.prompt_global_steps[partition_id])}
        ordered = sorted(selected_prompt_uids, key=lambda uid: dispatched.get(uid, len(dispatched)))
        batch = super()._materialize_batch(partition_id, ordered, partition_snapshot)
        pairs = sorted(
            zip(batch.keys, batch.tags, strict=True),
            key=lambda kv: (dispatched.get(_split(kv[0])[0], len(dispatched)), *_split(kv[0])[1:]),
        )
        batch.keys = [k for k, _ in pairs]
        batch.tags = [t for _, t in pairs]
        return batch
