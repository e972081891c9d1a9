"""vlaforge: vision-language-action robot policies, fast on a laptop CPU."""

import os

# MuJoCo picks its GL backend when first imported: headless EGL (software Mesa) unless the user chose.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("EGL_PLATFORM", "surfaceless")

__version__ = "0.1.0"
