"""Developer tools (not part of the extension zip): loading this checkout into the bpy module."""
