"""vlaforge: vision-language-action robot policies, fast on a laptop CPU."""

__version__ = "0.1.0"
