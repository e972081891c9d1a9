"""Batch keys and tensor conventions shared by the data loader, the model, the eval runner and the server.

Keys follow LeRobot. Shapes (B batch, T observation history, H action chunk, A action dims,
S proprio dims, C=3 channels):

    observation.images.<camera>   uint8   [B, T, H, W, C]  (HWC as stored; the policy converts to float CHW)
    observation.state             float32 [B, T, S]        robot units (the policy normalizes)
    observation.environment_state float32 [B, T, 39]       privileged sim state; never a policy input by default
    task                          list[str] of length B    the instruction
    action                        float32 [B, H, A]        robot units
    observation_is_pad            bool    [B, T]           True where the history step lies before the episode start
    action_is_pad                 bool    [B, H]           True where the chunk step lies after the episode end
    action_dim_mask               bool    [B, A]           True for a real action dimension (False: padding of a
                                                           smaller robot inside a mixture)
    state_dim_mask                bool    [B, S]           the same for proprio
    dataset_index                 int64   [B]              which dataset/embodiment of a mixture (0 alone)
    camera_mask                   bool    [B, C]           True where the policy's camera slot c (in
                                                           `PolicyConfig.cameras` order) has a real
                                                           image; absent = every slot is real

Convention: `*_is_pad` is True for padding (LeRobot); `*_mask` is True for valid entries (Octo).
"""

from __future__ import annotations

IMAGE_PREFIX = "observation.images."
STATE = "observation.state"
ENV_STATE = "observation.environment_state"
ACTION = "action"
TASK = "task"
REWARD = "next.reward"
SUCCESS = "next.success"
OBS_IS_PAD = "observation_is_pad"
ACTION_IS_PAD = "action_is_pad"
ACTION_DIM_MASK = "action_dim_mask"
STATE_DIM_MASK = "state_dim_mask"
DATASET_INDEX = "dataset_index"
CAMERA_MASK = "camera_mask"


def image_key(camera: str) -> str:
    """`corner2` -> `observation.images.corner2`."""
    return IMAGE_PREFIX + camera


def camera_of(key: str) -> str:
    """`observation.images.corner2` -> `corner2`."""
    if not key.startswith(IMAGE_PREFIX):
        raise ValueError(f"{key!r} is not an image key (expected the prefix {IMAGE_PREFIX!r})")
    return key[len(IMAGE_PREFIX) :]
