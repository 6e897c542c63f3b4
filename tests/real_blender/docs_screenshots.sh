#!/usr/bin/env bash
# Crop the harness's screenshots into docs/screenshots/ (the README's pictures), with the chroot's ImageMagick.
#
#   tests/real_blender/docs_screenshots.sh
#
# Run after a `make test-real-blender` whose enable and windowed steps passed. The rectangles are in the harness's
# screen (1600x1200, the window filling it, Blender's default UI scale), top-left origin: WIDTHxHEIGHT+X+Y.
# Look at every picture before committing it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export REAL_BLENDER_OUT=${REAL_BLENDER_OUT:-/var/tmp/diffusion-bender-real-blender}

"$HERE/chroot.sh" run /bin/bash -euo pipefail -c '
shots=/out/screenshots
docs=/src/docs/screenshots
mkdir -p "$docs"
crop() {  # crop SOURCE GEOMETRY TARGET [EXTRA CONVERT OPTIONS]
    local source=$shots/$1 geometry=$2 target=$docs/$3
    shift 3
    [ -f "$source" ] || { echo "missing $source: run the harness first" >&2; exit 1; }
    convert "$source" -crop "$geometry" +repage "$@" -strip "$target"
    echo "$target: $(stat -c %s "$target") bytes"
}
crop missing_preferences_window.png 1140x700+172+95 preferences-missing-dependencies.png
crop missing_sidebar.png 377x440+0+0 sidebar-missing-dependencies.png
crop sidebar_bend.png 375x1009+0+0 sidebar-model-prompts-audio.png
crop sidebar_bend_lower.png 375x720+0+0 sidebar-bends-preview-render.png
crop window_drivers_editor.png 284x130+1316+238 drivers-editor.png
crop window_rendering.png 940x440+0+760 sequencer-rendering-status-bar.png
crop window_rendered.png 940x340+0+760 sequencer-image-strip.png
crop window_preview.png 654x370+946+500 preview-frame.png
crop window_preview.png 1600x1200+0+0 window-preview.png -resize 75%
'
