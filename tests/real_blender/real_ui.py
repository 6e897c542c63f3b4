"""What the windowed scripts share: the window under Xvfb, its areas, screenshots and crops, xdotool clicks, and a
timer that runs a session generator (each ``yield`` is the seconds to wait while Blender redraws and handles events).

The window fills the screen (``blender --window-geometry 0 0 W H``), so screen and window coordinates differ only
in where y starts: Blender counts from the bottom, X from the top.
"""

import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import bpy
from real_common import OUT, Checks

SHOTS = OUT / "screenshots"
CATEGORY = "Bend"

checks = Checks()
_started = time.monotonic()


def log(text: str) -> None:
    print(f"ui {time.monotonic() - _started:6.1f} s: {text}", flush=True)


# --- finding things on screen ------------------------------------------------------------------------------


def window() -> bpy.types.Window:
    return bpy.context.window_manager.windows[0]


def areas(kind: str) -> list[bpy.types.Area]:
    return [a for a in window().screen.areas if a.type == kind]


def region(area: bpy.types.Area, kind: str) -> bpy.types.Region:
    return next(r for r in area.regions if r.type == kind)


def override(area: bpy.types.Area | None = None, region_type: str = "WINDOW"):
    win = window()
    if area is None:
        return bpy.context.temp_override(window=win, screen=win.screen)
    return bpy.context.temp_override(window=win, screen=win.screen, area=area, region=region(area, region_type))


def status_bar_height() -> int:
    """The status bar's height: what lies below the lowest area (it is a global area, which the screen does not
    list)."""
    return min(a.y for a in window().screen.areas)


# --- screenshots -------------------------------------------------------------------------------------------


def screenshot(name: str) -> Path:
    """The whole screen, which the window fills (``--window-geometry 0 0 W H``), through the X server: under Xvfb
    ``bpy.ops.screen.screenshot`` reads back a black frame buffer."""
    path = SHOTS / f"{name}.png"
    done = subprocess.run(["import", "-window", "root", str(path)], capture_output=True, text=True)
    if done.returncode != 0 or not path.is_file():
        checks.fail(f"import -window root wrote no {path.name}: {done.stderr.strip()}")
    return path


def region_pixels(area: bpy.types.Area, region_type: str = "UI") -> bytes:
    """The region's pixels as the X server has them now (for telling whether the screen changed)."""
    r = region(area, region_type)
    top = window().height - (r.y + r.height)
    done = subprocess.run(
        ["import", "-window", "root", "-crop", f"{r.width}x{r.height}+{r.x}+{top}", "rgb:-"], capture_output=True
    )
    return done.stdout


def settled(area: bpy.types.Area, region_type: str = "UI", seconds: float = 20.0):
    """Wait until the region looks the same twice in a row (an animation has ended, a slow redraw has landed)."""
    previous = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        yield 0.4
        pixels = region_pixels(area, region_type)
        if pixels == previous:
            return
        previous = pixels


def crop(source: Path, name: str, x: int, y: int, width: int, height: int) -> Path | None:
    """Crop a window screenshot to a rectangle in Blender's window coordinates (origin bottom left)."""
    top = window().height - (y + height)
    path = SHOTS / f"{name}.png"
    done = subprocess.run(
        ["convert", str(source), "-crop", f"{width}x{height}+{x}+{top}", "+repage", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        checks.fail(f"cropping {name}.png failed: {done.stderr.strip()}")
        return None
    check_not_blank(path)
    return path


def crop_region(source: Path, name: str, area: bpy.types.Area, region_type: str = "WINDOW") -> Path | None:
    r = region(area, region_type)
    return crop(source, name, r.x, r.y, r.width, r.height)


def check_not_blank(path: Path) -> None:
    done = subprocess.run(
        ["identify", "-format", "%[fx:standard_deviation]", str(path)], capture_output=True, text=True
    )
    try:
        spread = float(done.stdout.strip() or "nan")
    except ValueError:
        spread = float("nan")
    checks.check(spread > 0.01, f"{path.name} is blank (standard deviation {spread}); see {path}")


def theme_state_colour(name: str) -> tuple[int, int, int]:
    """A colour of the theme's animation states (``inner_driven``, ``inner_key`` ...) as 8-bit RGB."""
    colour = getattr(bpy.context.preferences.themes[0].user_interface.wcol_state, name)
    return tuple(round(c * 255) for c in colour[:3])


def hue(rgb: tuple[int, int, int]) -> float | None:
    """The hue in degrees of a clearly coloured pixel; None for greys and near-greys (the UI's own colours)."""
    high, low = max(rgb), min(rgb)
    if high == 0 or (high - low) < 48 or (high - low) / high < 0.35:
        return None
    r, g, b = rgb
    if high == r:
        angle = 60 * ((g - b) / (high - low))
    elif high == g:
        angle = 60 * ((b - r) / (high - low)) + 120
    else:
        angle = 60 * ((r - g) / (high - low)) + 240
    return angle % 360


def state_colour_run(path: Path, state: str, others: tuple[str, ...]) -> int:
    """The longest horizontal run of pixels in a PNG whose hue is nearest the theme's ``state`` colour among
    ``state`` and ``others`` (and within 25 degrees of it): a field drawn in that state is a run as wide as the field.

    Hue, not the exact colour: Blender mixes the state colour into the widget's own (``wcol_state.blend``), so the
    pixels are a shade of it that depends on the widget and the version.
    """
    hues = {name: hue(theme_state_colour(name)) for name in (state, *others)}
    size = subprocess.run(["identify", "-format", "%w %h", str(path)], capture_output=True, text=True)
    done = subprocess.run(["convert", str(path), "-depth", "8", "rgb:-"], capture_output=True)
    if size.returncode != 0 or done.returncode != 0 or hues[state] is None:
        checks.fail(f"could not read the pixels of {path.name}, or the theme's {state} colour is grey")
        return 0

    def distance(a: float, b: float | None) -> float:
        return 360.0 if b is None else min(abs(a - b), 360 - abs(a - b))

    def matches(rgb: tuple[int, int, int]) -> bool:
        h = hue(rgb)
        if h is None:
            return False
        nearest = min(hues, key=lambda name: distance(h, hues[name]))
        return nearest == state and distance(h, hues[state]) <= 25

    width = int(size.stdout.split()[0])
    pixels, longest, cache = done.stdout, 0, {}
    for row in range(len(pixels) // (3 * width)):
        run = 0
        for x in range(width):
            i = 3 * (row * width + x)
            rgb = (pixels[i], pixels[i + 1], pixels[i + 2])
            if rgb not in cache:
                cache[rgb] = matches(rgb)
            run = run + 1 if cache[rgb] else 0
            longest = max(longest, run)
    return longest


# --- clicking ----------------------------------------------------------------------------------------------


def click(x: int, y: int) -> None:
    """A left click at window coordinates (origin bottom left); the window fills the screen."""
    subprocess.run(
        ["xdotool", "mousemove", "--sync", str(x), str(window().height - y), "click", "1"],
        check=True,
        capture_output=True,
    )


def scroll(x: int, y: int, clicks: int, down: bool = True) -> None:
    """Mouse-wheel clicks at window coordinates (X buttons 5 and 4 are the wheel's down and up)."""
    button = "5" if down else "4"
    position = ["mousemove", "--sync", str(x), str(window().height - y)]
    subprocess.run(
        ["xdotool", *position, "click", "--repeat", str(clicks), "--delay", "30", button],
        check=True,
        capture_output=True,
    )


def choose_category(area: bpy.types.Area):
    """Click down the sidebar's tab strip until the Bend tab is active (a generator: it waits for redraws)."""
    ui = region(area, "UI")
    if ui.active_panel_category == CATEGORY:
        return
    # The tabs run down the sidebar's right edge, in a strip about 20 px wide (at UI scale 1).
    x = ui.x + ui.width - 10
    for offset in range(12, ui.height, 12):
        click(x, ui.y + ui.height - offset)
        yield 0.3
        if ui.active_panel_category == CATEGORY:
            log(f"the {CATEGORY} tab is active after a click {offset} px below the sidebar's top")
            return
    checks.fail(f"clicking the sidebar's tabs never made {CATEGORY!r} active (it is {ui.active_panel_category!r})")


# --- waiting -----------------------------------------------------------------------------------------------


def modal_running(idname: str) -> bool:
    return any(op.bl_idname == idname for op in getattr(window(), "modal_operators", []))


def wait_for(condition, seconds: float, what: str, poll: float = 0.25):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            checks.fail(f"waited {seconds:.0f} s for {what}")
            return
        yield poll


def record_until(read, condition, seconds: float, what: str, seen: list, poll: float = 0.1):
    """Like ``wait_for``, appending to ``seen`` each value of ``read()`` that differs from the one before, with its
    time: what the UI showed, in order (a generator: it waits between reads)."""
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if not seen or seen[-1][1] != value:
            seen.append((round(time.monotonic() - _started, 2), value))
        if condition(value):
            return
        if time.monotonic() > deadline:
            checks.fail(f"waited {seconds:.0f} s for {what}; last seen {value!r}")
            return
        yield poll


def key(name: str) -> None:
    """A key press (xdotool's key name) with the pointer over the window, which then has the keyboard focus."""
    subprocess.run(
        ["xdotool", "mousemove", "--sync", str(window().width // 2), str(window().height // 2), "key", name],
        check=True,
        capture_output=True,
    )


# --- running a session -------------------------------------------------------------------------------------


def run(session, name: str, limit_s: float = 900.0) -> None:
    """Run ``session()`` (a generator yielding seconds to wait) from a timer, then quit Blender."""
    state = {"steps": None}

    def finish() -> None:
        sys.stdout.flush()
        with override():
            bpy.ops.wm.quit_blender()

    def tick():
        try:
            if state["steps"] is None:
                SHOTS.mkdir(parents=True, exist_ok=True)
                state["steps"] = session()
            return next(state["steps"])
        except StopIteration:
            pass
        except Exception:  # a bug here, or Blender refusing an operator: the harness must hear of it
            checks.fail(f"the {name} session raised: " + traceback.format_exc().strip().splitlines()[-1])
            traceback.print_exc()
        finish()
        return None

    def watchdog():
        checks.fail(f"the {name} session took over {limit_s:.0f} s")
        sys.stdout.flush()
        os._exit(1)

    bpy.app.timers.register(tick, first_interval=2.0)
    bpy.app.timers.register(watchdog, first_interval=limit_s)
