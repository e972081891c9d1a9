"""Camera slots: which of a dataset's (or an environment's) cameras feeds which image input of a policy.

A policy reads its images under named slots, `PolicyConfig.cameras` (e.g. `("primary", "wrist")`).
Robots name their cameras differently (Meta-World `corner2`, ALOHA `top`, robosuite `agentview` and
`robot0_eye_in_hand`), so each dataset is mapped onto the slots, per slot in order:

1. a camera with exactly the slot's name (so a policy with `cameras=("corner2",)` reads `corner2`);
2. a camera the user maps to it explicitly (`camera_map`, "CAMERA=SLOT,...");
3. the first camera whose recorded role (the collection sidecar's `camera_roles`, see
   `vlaforge.envs.registry.Camera.role`) equals the slot name;
4. none: the slot is *missing* for this dataset. Its frames are not zero images that the policy
   learns to read: the batch's `camera_mask` is False there and the trunk drops those tokens as
   attention keys (Octo's per-observation pad masks), so they cannot influence anything.

A camera feeds at most one slot. A dataset none of whose cameras maps to any slot is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vlaforge.config import key_value_pairs
from vlaforge.errors import VlaforgeError

#: (slot, camera or None) per policy slot, in the policy's order.
SlotMap = tuple[tuple[str, str | None], ...]


def parse_camera_map(spec: str) -> dict[str, str]:
    """ "top=primary,cam_wrist=wrist" -> {"top": "primary", "cam_wrist": "wrist"}."""
    out: dict[str, str] = {}
    for camera, slot in key_value_pairs(spec, "camera_map", "CAMERA=SLOT (e.g. top=primary)"):
        if camera in out and out[camera] != slot:
            raise VlaforgeError(f"camera_map maps camera {camera!r} twice ({out[camera]!r} and {slot!r})")
        out[camera] = slot
    return out


def map_slots(
    slots: Sequence[str],
    cameras: Sequence[str],
    roles: Mapping[str, str] | None = None,
    camera_map: Mapping[str, str] | None = None,
    *,
    where: str = "the dataset",
) -> SlotMap:
    """Each slot's camera among `cameras` (module docstring); raises when no slot gets one."""
    roles, camera_map = dict(roles or {}), dict(camera_map or {})
    used: set[str] = set()
    out: list[tuple[str, str | None]] = []
    for slot in slots:
        rules = (
            [c for c in cameras if c == slot],
            [c for c in cameras if camera_map.get(c) == slot],
            [c for c in cameras if roles.get(c) == slot and c not in camera_map],
        )
        camera = next((c for rule in rules for c in rule if c not in used), None)
        if camera is not None:
            used.add(camera)
        out.append((slot, camera))
    if all(camera is None for _, camera in out):
        have = ", ".join(f"{c} ({roles[c]})" if c in roles else c for c in cameras) or "none"
        raise VlaforgeError(
            f"{where}: none of its cameras [{have}] maps to the policy's camera slots "
            f"{tuple(slots)}; name slots that match its cameras or roles (--set model.cameras=...) "
            "or map them (--set train.camera_map=CAMERA=SLOT,...)"
        )
    return tuple(out)


def is_identity(slot_map: SlotMap) -> bool:
    """True when every slot is fed by the camera of the same name (the single-robot case)."""
    return all(slot == camera for slot, camera in slot_map)
