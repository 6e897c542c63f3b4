"""The real extension inside the bpy module, loaded once per test process (see devtools/extension_session.py)."""

from devtools.extension_session import EXTENSION_ID, MODULE, ROOT, disable, enable, extension, start

__all__ = ["EXTENSION_ID", "MODULE", "ROOT", "disable", "enable", "extension"]

start()
