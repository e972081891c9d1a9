"""LeRobot dataset format v3.0: `LeRobotWriter` (write, resumable) and `LeRobotV3Dataset` (read).

The implementation lives in `vlaforge.data.writer`, `vlaforge.data.reader`, `vlaforge.data.layout`
(paths and field names), `vlaforge.data.stats` and `vlaforge.data.video`; this module is the
public entry point named in the team contract.
"""

from __future__ import annotations

from vlaforge.data.layout import CODEBASE_VERSION
from vlaforge.data.reader import LeRobotV3Dataset
from vlaforge.data.writer import LeRobotWriter

__all__ = ["CODEBASE_VERSION", "LeRobotV3Dataset", "LeRobotWriter"]
